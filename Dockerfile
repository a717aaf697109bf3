# syntax=docker/dockerfile:1
# acquire-exporter and acquire-simulator on a distroless base, running as a non-root user.
#   docker build --build-arg ACQUIRE_EXPORTER_REVISION=$(git rev-parse --short HEAD) -t acquire-exporter .
#   docker run -p 127.0.0.1:9867:9867 -v acquire-data:/data acquire-exporter

FROM rust:1.95-bookworm AS build
# The revision acquire_exporter_build_info reports (read at compile time); .git is not copied.
ARG ACQUIRE_EXPORTER_REVISION=unknown
WORKDIR /src
COPY . .
# The registry and target caches survive between builds; the binaries are copied out of them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    ACQUIRE_EXPORTER_REVISION="$ACQUIRE_EXPORTER_REVISION" cargo build --release --locked --bin acquire-exporter --bin acquire-simulator \
    && mkdir -p /out/data \
    && cp target/release/acquire-exporter target/release/acquire-simulator /out/

# Debian 12's glibc, like the builder; "nonroot" is uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/acquire-exporter /out/acquire-simulator /usr/local/bin/
# The state folder belongs to the non-root user, also when a named volume is first mounted on it.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
VOLUME ["/data"]
EXPOSE 9867
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/acquire-exporter", "healthcheck", "--url=http://127.0.0.1:9867/-/healthy"]
ENTRYPOINT ["/usr/local/bin/acquire-exporter"]
CMD ["--storage.path=/data"]
