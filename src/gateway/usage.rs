//! Reads the token counts a provider reports out of its answer as it streams by: an OpenAI-style
//! `usage` (`prompt_tokens`, `completion_tokens`) or an Anthropic-style one (`input_tokens`,
//! `output_tokens`), in a JSON body or in the `data:` lines of an event stream.

use serde_json::Value;

/// A JSON body bigger than this is not looked into (answers are far smaller).
const MAX_BODY: usize = 8 << 20;

#[derive(Default)]
pub struct UsageTap {
    line: Vec<u8>,
    body: Vec<u8>,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

impl UsageTap {
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.body.len() + chunk.len() <= MAX_BODY {
            self.body.extend_from_slice(chunk);
        }
        for &b in chunk {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                if let Some(data) = line.strip_prefix(b"data:") {
                    if let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii()) {
                        self.take(&v);
                    }
                }
            } else if self.line.len() < MAX_BODY {
                self.line.push(b);
            }
        }
    }

    /// At the end: a plain JSON body is read whole.
    pub fn finish(&mut self) {
        if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
            self.take(&v);
        }
    }

    fn take(&mut self, v: &Value) {
        // Anthropic streams put it under `message` at the start and at the top level at the end.
        for usage in [&v["usage"], &v["message"]["usage"]] {
            let input = usage["prompt_tokens"]
                .as_i64()
                .or(usage["input_tokens"].as_i64());
            let output = usage["completion_tokens"]
                .as_i64()
                .or(usage["output_tokens"].as_i64());
            // Streams report running totals: the largest seen is the count.
            if let Some(i) = input {
                self.input_tokens = self.input_tokens.max(i);
            }
            if let Some(o) = output {
                self.output_tokens = self.output_tokens.max(o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_streams_and_bodies() {
        let mut t = UsageTap::default();
        t.feed(b"data: {\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,");
        t.feed(b"\"completion_tokens\":3}}\n\ndata: [DONE]\n\n");
        t.finish();
        assert_eq!((t.input_tokens, t.output_tokens), (12, 3));
        let mut t = UsageTap::default();
        t.feed(br#"{"id":"x","usage":{"input_tokens":7,"output_tokens":2}}"#);
        t.finish();
        assert_eq!((t.input_tokens, t.output_tokens), (7, 2));
    }
}
