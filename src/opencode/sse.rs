//! A minimal Server-Sent Events reader for OpenCode's `/event` stream: it sends only `data:` lines, one
//! JSON object per event.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::Value;

/// Turns a byte stream into the JSON values of its `data:` events. Ends when the stream ends or fails.
pub fn events(
    body: impl Stream<Item = reqwest::Result<Bytes>> + Send + Unpin + 'static,
) -> impl Stream<Item = Value> + Send + Unpin {
    let state = (body, Vec::<u8>::new(), String::new());
    Box::pin(futures::stream::unfold(
        state,
        |(mut body, mut buf, mut data)| async move {
            loop {
                // Dispatch complete lines already buffered.
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let line = String::from_utf8_lossy(&line);
                    let line = line.trim_end_matches(['\n', '\r']);
                    if line.is_empty() {
                        if !data.is_empty() {
                            let parsed = serde_json::from_str::<Value>(&data);
                            data.clear();
                            if let Ok(v) = parsed {
                                return Some((v, (body, buf, data)));
                            }
                        }
                    } else if let Some(d) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
                match body.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    _ => return None,
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_events_across_chunks() {
        let chunks: Vec<reqwest::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"data: {\"type\":\"a\"}\n\nda")),
            Ok(Bytes::from_static(
                b"ta: {\"type\":\"b\"}\r\n\r\n: comment\n\ndata: not json\n\n",
            )),
            Ok(Bytes::from_static(b"data: {\"type\":\"c\"}\n\n")),
        ];
        let got: Vec<Value> = events(futures::stream::iter(chunks)).collect().await;
        let types: Vec<&str> = got.iter().map(|v| v["type"].as_str().unwrap()).collect();
        assert_eq!(types, vec!["a", "b", "c"]);
    }
}
