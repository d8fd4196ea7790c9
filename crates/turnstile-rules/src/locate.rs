//! The line of a YAML path in a file, for the problems found after parsing (a duplicate key, a
//! bad unit, `replaces` naming itself...), which serde reports without a position.
//!
//! Hand-written over `yaml-rust2`'s marked events, because no serde YAML deserializer exposes
//! the position of a value: the events are walked once, tracking the path of each node, and the
//! deepest node on the way to the wanted path gives the line (so a missing field points at the
//! map that lacks it).

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `descriptors[1].rate_limit.unit` → `[Key(descriptors), Index(1), Key(rate_limit), Key(unit)]`.
fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|key| !key.is_empty()) {
            out.push(Segment::Key(key.to_owned()));
        }
        for index in pieces {
            if let Ok(index) = index.trim_end_matches(']').parse() {
                out.push(Segment::Index(index));
            }
        }
    }
    out
}

enum Frame {
    Map {
        key: Option<String>,
        /// Whether the next scalar is a key.
        expecting_key: bool,
        /// Whether this container added a segment to the path (the root adds none).
        pushed: bool,
    },
    Seq {
        index: usize,
        pushed: bool,
    },
}

struct Locator {
    target: Vec<Segment>,
    frames: Vec<Frame>,
    path: Vec<Segment>,
    /// (matched segments, line) of the deepest node on the way to the target.
    best: Option<(usize, usize)>,
}

impl Locator {
    /// The segment of the node that starts now, within its parent.
    fn segment(&self) -> Option<Segment> {
        match self.frames.last()? {
            Frame::Map { key, .. } => key.clone().map(Segment::Key),
            Frame::Seq { index, .. } => Some(Segment::Index(*index)),
        }
    }

    /// A node starts at `mark`; returns its segment, if any.
    fn start(&mut self, mark: Marker) -> Option<Segment> {
        let segment = self.segment();
        let depth = self.path.len() + usize::from(segment.is_some());
        let on_the_way = self.target.len() >= depth
            && self.target[..self.path.len()] == self.path[..]
            && segment
                .as_ref()
                .is_none_or(|segment| self.target[self.path.len()] == *segment);
        if on_the_way && self.best.is_none_or(|(matched, _)| depth > matched) {
            self.best = Some((depth, mark.line()));
        }
        segment
    }

    /// A node ended: its parent moves on.
    fn end(&mut self) {
        match self.frames.last_mut() {
            Some(Frame::Map {
                key, expecting_key, ..
            }) => {
                *key = None;
                *expecting_key = true;
            }
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn open(&mut self, mark: Marker, map: bool) {
        let segment = self.start(mark);
        let pushed = segment.is_some();
        if let Some(segment) = segment {
            self.path.push(segment);
        }
        self.frames.push(if map {
            Frame::Map {
                key: None,
                expecting_key: true,
                pushed,
            }
        } else {
            Frame::Seq { index: 0, pushed }
        });
    }

    fn close(&mut self) {
        let pushed = match self.frames.pop() {
            Some(Frame::Map { pushed, .. } | Frame::Seq { pushed, .. }) => pushed,
            None => false,
        };
        if pushed {
            self.path.pop();
        }
        self.end();
    }
}

impl MarkedEventReceiver for Locator {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map {
                    key,
                    expecting_key: expecting_key @ true,
                    ..
                }) = self.frames.last_mut()
                {
                    *key = Some(value);
                    *expecting_key = false;
                } else {
                    self.start(mark);
                    self.end();
                }
            }
            Event::Alias(_) => {
                self.start(mark);
                self.end();
            }
            Event::MappingStart(..) => self.open(mark, true),
            Event::SequenceStart(..) => self.open(mark, false),
            Event::MappingEnd | Event::SequenceEnd => self.close(),
            _ => {}
        }
    }
}

/// The line (from 1) of the node at `path` in `text`, or of the deepest node on the way to it;
/// `None` when the text does not parse or the path is empty.
pub(crate) fn line_of(text: &str, path: &str) -> Option<usize> {
    let mut locator = Locator {
        target: segments(path),
        frames: Vec::new(),
        path: Vec::new(),
        best: None,
    };
    if locator.target.is_empty() {
        return None;
    }
    Parser::new_from_str(text).load(&mut locator, false).ok()?;
    locator
        .best
        .filter(|(matched, _)| *matched > 0)
        .map(|(_, line)| line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      unit: day\n  - key: b\n    descriptors:\n      - key: c\n        rate_limit: { unit: fortnight, requests_per_unit: 1 }\n  - value: v\n";

    #[test]
    fn paths_are_found_on_their_lines() {
        assert_eq!(line_of(TEXT, "domain"), Some(1));
        assert_eq!(line_of(TEXT, "descriptors[0]"), Some(3));
        assert_eq!(line_of(TEXT, "descriptors[0].rate_limit.unit"), Some(5));
        assert_eq!(line_of(TEXT, "descriptors[1]"), Some(6));
        assert_eq!(
            line_of(TEXT, "descriptors[1].descriptors[0].rate_limit.unit"),
            Some(9)
        );
        // A missing field: the map that lacks it.
        assert_eq!(line_of(TEXT, "descriptors[2].key"), Some(10));
        assert_eq!(line_of(TEXT, ""), None);
        assert_eq!(line_of("domain: [", "domain"), None);
    }
}
