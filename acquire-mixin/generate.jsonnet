// The kit's committed files from this mixin with its default config:
//   jsonnet -S -m . acquire-mixin/generate.jsonnet   (from the repository's root; see ./generate)
(import 'files.libsonnet')(import 'mixin.libsonnet')
