//! The two chat histograms, wait and duration, series by (department, agent role), and the one
//! walk over them that every exposition format takes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use super::labels::Value;
use super::lock;
use crate::record::histogram::{ChatHistogram, HistogramLayout};

/// The chat histograms' label names, in the order the exposition writes them; the values of
/// [`Series::label_values`] come in the same order.
pub const CHAT_LABELS: [&str; 2] = ["agent_role", "department"];

/// One of the two chat histogram families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFamily {
    /// `acquire_chat_wait_time_seconds`: how long the visitor waited.
    Wait,
    /// `acquire_chat_duration_seconds`: how long the chat lasted.
    Duration,
}

impl ChatFamily {
    /// Both families, in the order the exposition lists them.
    pub const ALL: [ChatFamily; 2] = [ChatFamily::Wait, ChatFamily::Duration];
}

/// One (department, agent role) series: both histograms.
#[derive(Debug)]
pub struct Series {
    department: Value,
    role: Value,
    /// The wait histogram.
    pub wait: ChatHistogram,
    /// The duration histogram.
    pub duration: ChatHistogram,
    /// A slot the exposition fills with the series' label pairs as the text formats write them,
    /// so that they are rendered once per series, not once per scrape.
    pub rendered_labels: Option<Box<[u8]>>,
}

impl Series {
    /// The label values, in the order of [`CHAT_LABELS`].
    pub fn label_values(&self) -> [&str; 2] {
        [&self.role.0, &self.department.0]
    }

    /// The histogram of `family`.
    pub fn histogram(&self, family: ChatFamily) -> &ChatHistogram {
        match family {
            ChatFamily::Wait => &self.wait,
            ChatFamily::Duration => &self.duration,
        }
    }
}

/// What walks over the chat histograms: each exposition format is one.
pub trait ChatVisitor {
    /// A family starts; at most `series` series follow.
    fn begin(&mut self, family: ChatFamily, layout: &HistogramLayout, series: usize);
    /// One series of the family, with observations.
    fn series(&mut self, family: ChatFamily, layout: &HistogramLayout, series: &mut Series);
    /// The family ends.
    fn end(&mut self, family: ChatFamily);
}

/// (department, agent_role): the order series are listed in.
type SeriesKey = (Value, Value);

/// The chat histograms.
#[derive(Debug)]
pub struct ChatSeries {
    wait_layout: HistogramLayout,
    duration_layout: HistogramLayout,
    series: RwLock<HashMap<SeriesKey, Arc<Mutex<Series>>>>,
}

impl ChatSeries {
    /// No series yet, with the layouts of the two families.
    pub fn new(wait_layout: HistogramLayout, duration_layout: HistogramLayout) -> Self {
        ChatSeries {
            wait_layout,
            duration_layout,
            series: RwLock::new(HashMap::new()),
        }
    }

    /// The layout of `family`.
    pub fn layout(&self, family: ChatFamily) -> &HistogramLayout {
        match family {
            ChatFamily::Wait => &self.wait_layout,
            ChatFamily::Duration => &self.duration_layout,
        }
    }

    /// The series of (department, role), made on first use.
    pub(crate) fn series(&self, department: Value, role: Value) -> Arc<Mutex<Series>> {
        let key = (department, role);
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return s.clone();
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Series {
                    department: key.0,
                    role: key.1,
                    wait: ChatHistogram::new(&self.wait_layout),
                    duration: ChatHistogram::new(&self.duration_layout),
                    rendered_labels: None,
                }))
            })
            .clone()
    }

    /// Every series, in label order: (department, agent role).
    pub fn sorted(&self) -> Vec<Arc<Mutex<Series>>> {
        let mut entries: Vec<_> = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        entries.into_iter().map(|(_, v)| v).collect()
    }

    /// The walk every exposition format takes: for each family in [`ChatFamily::ALL`], the
    /// visitor's [`ChatVisitor::series`] with each series that has observations in it, in label
    /// order, between [`ChatVisitor::begin`] and [`ChatVisitor::end`]. Each series is locked
    /// only while it is visited, so a scrape of thousands of series never holds up the webhooks
    /// of the others. A series that only ever saw the other measure stays out of a family
    /// rather than showing an empty series.
    pub fn walk(&self, visitor: &mut impl ChatVisitor) {
        let entries = self.sorted();
        for family in ChatFamily::ALL {
            let layout = self.layout(family);
            visitor.begin(family, layout, entries.len());
            for series in &entries {
                let mut series = lock(series);
                if series.histogram(family).count() > 0 {
                    visitor.series(family, layout, &mut series);
                }
            }
            visitor.end(family);
        }
    }

    /// Observations of the wait histogram, summed over series.
    pub fn wait_count(&self) -> u64 {
        self.series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|p| lock(p).wait.count())
            .sum()
    }
}
