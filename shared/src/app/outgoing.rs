//! The local server's response body: bytes in memory, or a staged file sent in chunks as
//! the client reads it (hyper polls for the next chunk only once the last one is written),
//! so a client that never reads holds one chunk, not the file. A media response also holds
//! its peer's media slot until its last byte is sent or the client goes away.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::app::conn::PeerSlot;
use crate::http::FileBody;

/// A file is read in chunks of this size.
const CHUNK: u64 = 64 * 1024;

pub(crate) struct Outgoing {
    source: Source,
    _slot: Option<PeerSlot>,
}

enum Source {
    Bytes(Option<Bytes>),
    File {
        file: Arc<std::fs::File>,
        offset: u64,
        left: u64,
        reading: Option<tokio::task::JoinHandle<std::io::Result<Bytes>>>,
    },
}

impl Outgoing {
    pub(crate) fn new(body: Bytes, file: Option<FileBody>, slot: Option<PeerSlot>) -> Self {
        let source = match file {
            Some(f) => Source::File {
                file: f.file,
                offset: 0,
                left: f.len,
                reading: None,
            },
            None => Source::Bytes((!body.is_empty()).then_some(body)),
        };
        Self {
            source,
            _slot: slot,
        }
    }
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(file, buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let (file, offset, left, reading) = match &mut self.get_mut().source {
            Source::Bytes(b) => return Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Source::File {
                file,
                offset,
                left,
                reading,
            } => (file, offset, left, reading),
        };
        if *left == 0 {
            return Poll::Ready(None);
        }
        let job = reading.get_or_insert_with(|| {
            let (file, at, n) = (file.clone(), *offset, (*left).min(CHUNK) as usize);
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                // A file cut short since it was opened ends the answer with an error
                // (the client sees a short body against Content-Length), never padding.
                read_at(&file, &mut buf, at)?;
                Ok(Bytes::from(buf))
            })
        });
        let done = std::task::ready!(Pin::new(job).poll(cx));
        *reading = None;
        Poll::Ready(Some(match done {
            Ok(Ok(chunk)) => {
                *offset += chunk.len() as u64;
                *left -= chunk.len() as u64;
                Ok(Frame::data(chunk))
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "staged media: reading the file failed mid-answer");
                Err(e)
            }
            Err(e) => Err(std::io::Error::other(e)),
        }))
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Bytes(b) => b.is_none(),
            Source::File { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Source::File { left, .. } => SizeHint::with_exact(*left),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_file_goes_out_in_chunks_and_whole() {
        let dir = std::env::temp_dir().join(format!("wxdesk-outgoing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = FileBody {
            file: Arc::new(std::fs::File::open(&path).unwrap()),
            len: data.len() as u64,
        };
        let mut body = Outgoing::new(Bytes::new(), Some(file), None);
        assert_eq!(body.size_hint().exact(), Some(200_000));
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(chunk.len() as u64 <= CHUNK);
            got.extend_from_slice(&chunk);
            frames += 1;
        }
        assert_eq!(got, data);
        assert_eq!(frames, 4);
        // Deleted under an open answer: the answer still completes.
        let file = FileBody {
            file: Arc::new(std::fs::File::open(&path).unwrap()),
            len: data.len() as u64,
        };
        std::fs::remove_file(&path).unwrap();
        let all = Outgoing::new(Bytes::new(), Some(file), None)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(all.len(), data.len());
    }

    #[tokio::test]
    async fn bytes_go_out_once() {
        let all = Outgoing::new(Bytes::from_static(b"abc"), None, None)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&all[..], b"abc");
        assert!(Outgoing::new(Bytes::new(), None, None).is_end_stream());
    }
}
