//! The chat histograms on a page: their names and help texts, and the text and protobuf
//! writers as sinks of the one walk over them ([`ChatSeries::walk`]).

use super::output::Output;
use super::protobuf::{ProtobufScratch, write_family_head, write_histogram, write_metric_key};
use super::text::{BucketLabels, HistogramText, render_labels};
use crate::record::chats::{CHAT_LABELS, ChatFamily, ChatSeries, ChatVisitor, Series};
use crate::record::histogram::HistogramLayout;

/// Name and help text of a chat histogram family.
pub fn family_meta(family: ChatFamily) -> (&'static str, &'static str) {
    match family {
        ChatFamily::Wait => (
            "acquire_chat_wait_time_seconds",
            "Time visitors waited before an agent answered, per closed chat.",
        ),
        ChatFamily::Duration => ("acquire_chat_duration_seconds", "Duration of closed chats."),
    }
}

/// What the text writers keep between scrapes: the rendered `le` labels of both layouts.
#[derive(Debug)]
pub struct ChatFamilies {
    wait_les: BucketLabels,
    duration_les: BucketLabels,
}

impl ChatFamilies {
    /// For the layouts of `chats`.
    pub fn new(chats: &ChatSeries) -> Self {
        ChatFamilies {
            wait_les: BucketLabels::new(chats.layout(ChatFamily::Wait).bounds()),
            duration_les: BucketLabels::new(chats.layout(ChatFamily::Duration).bounds()),
        }
    }

    fn les(&self, family: ChatFamily) -> &BucketLabels {
        match family {
            ChatFamily::Wait => &self.wait_les,
            ChatFamily::Duration => &self.duration_les,
        }
    }

    /// Both families in a text format, straight from the series.
    pub fn write_text(&self, chats: &ChatSeries, out: &mut Output, om: bool) {
        let mut sink = TextSink {
            families: self,
            out,
            om,
            family: None,
            reserved: false,
            series: 0,
        };
        chats.walk(&mut sink);
    }

    /// Both families as length-delimited protobuf messages, byte for byte what prost makes of
    /// their data model after [`super::model::newest_exemplar_only`].
    pub fn write_protobuf(&self, chats: &ChatSeries, out: &mut Output) {
        let mut sink = ProtobufSink {
            out,
            scratch: ProtobufScratch::default(),
            body: Vec::new(),
        };
        chats.walk(&mut sink);
    }
}

/// The label pairs of a series in the order [`CHAT_LABELS`] gives.
fn label_pairs(series: &Series) -> [(&str, &str); 2] {
    let [a, b] = series.label_values();
    [(CHAT_LABELS[0], a), (CHAT_LABELS[1], b)]
}

struct TextSink<'a, 'o> {
    families: &'a ChatFamilies,
    out: &'o mut Output,
    om: bool,
    family: Option<HistogramText<'a>>,
    reserved: bool,
    series: usize,
}

impl ChatVisitor for TextSink<'_, '_> {
    fn begin(&mut self, family: ChatFamily, _: &HistogramLayout, series: usize) {
        let (name, help) = family_meta(family);
        self.family = Some(HistogramText::new(
            name,
            help,
            self.families.les(family),
            self.om,
        ));
        self.series = series;
    }

    fn series(&mut self, family: ChatFamily, _: &HistogramLayout, series: &mut Series) {
        if series.rendered_labels.is_none() {
            series.rendered_labels = Some(render_labels(&label_pairs(series)));
        }
        let Some(labels) = series.rendered_labels.as_deref() else {
            return;
        };
        if !self.reserved {
            // Room for the whole page at once, from the first series' size.
            self.reserved = true;
            let lines = self.families.wait_les.len() + self.families.duration_les.len() + 4;
            let per_line = labels.len() + if self.om { 80 } else { 56 };
            self.out.reserve(self.series * lines * per_line);
        }
        if let Some(text) = &mut self.family {
            text.series(self.out, labels, series.histogram(family));
        }
    }

    fn end(&mut self, _: ChatFamily) {
        self.family = None;
    }
}

struct ProtobufSink<'o> {
    out: &'o mut Output,
    scratch: ProtobufScratch,
    body: Vec<u8>,
}

impl ChatVisitor for ProtobufSink<'_> {
    fn begin(&mut self, _: ChatFamily, _: &HistogramLayout, _: usize) {
        self.body.clear();
    }

    fn series(&mut self, family: ChatFamily, layout: &HistogramLayout, series: &mut Series) {
        write_metric_key(&mut self.body);
        let pairs = label_pairs(series);
        write_histogram(
            series.histogram(family),
            layout,
            &pairs,
            &mut self.scratch,
            &mut self.body,
        );
    }

    fn end(&mut self, family: ChatFamily) {
        if self.body.is_empty() {
            return;
        }
        // The family's length comes first: its series are written aside, then passed on.
        let (name, help) = family_meta(family);
        let mut head = Vec::with_capacity(256);
        write_family_head(name, help, self.body.len(), &mut head);
        self.out.extend(&head);
        self.out.extend(&self.body);
    }
}
