//! Wire format of the rendezvous store: every message is a u32 length (little endian) followed by
//! that many bytes; the first byte is the operation, then fields as u32-length-prefixed byte
//! strings or little-endian integers. Small and dependency-free so any rank can speak it.
use std::io::{self, Read, Write};

/// Largest message accepted; keys and values are small (addresses, ids, counters).
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// Version of this protocol, sent in the hello so mismatched builds fail clearly.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// First message of a connection: the run's token and who is connecting (for messages).
    Hello {
        version: u32,
        token: String,
        client: String,
    },
    Set {
        key: String,
        value: Vec<u8>,
    },
    /// Waits up to `timeout_ms` for the key to exist.
    Get {
        key: String,
        timeout_ms: u64,
    },
    /// Adds to an integer counter (created at 0) and returns the new value.
    Add {
        key: String,
        delta: i64,
    },
    /// Sets `key` to `desired` if its value is `expected` (or it is absent and `expected` is
    /// empty); returns the value after the operation.
    CompareSet {
        key: String,
        expected: Vec<u8>,
        desired: Vec<u8>,
    },
    Delete {
        key: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Ok,
    Value(Vec<u8>),
    Int(i64),
    Bool(bool),
    /// A wait ran out.
    Timeout,
    /// The request was refused (wrong token, bad message).
    Refused(String),
}

const OP_HELLO: u8 = 1;
const OP_SET: u8 = 2;
const OP_GET: u8 = 3;
const OP_ADD: u8 = 4;
const OP_COMPARE_SET: u8 = 5;
const OP_DELETE: u8 = 6;

const R_OK: u8 = 100;
const R_VALUE: u8 = 101;
const R_INT: u8 = 102;
const R_BOOL: u8 = 103;
const R_TIMEOUT: u8 = 104;
const R_REFUSED: u8 = 105;

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Request::Hello { version, token, client } => {
                out.push(OP_HELLO);
                out.extend_from_slice(&version.to_le_bytes());
                put_bytes(&mut out, token.as_bytes());
                put_bytes(&mut out, client.as_bytes());
            }
            Request::Set { key, value } => {
                out.push(OP_SET);
                put_bytes(&mut out, key.as_bytes());
                put_bytes(&mut out, value);
            }
            Request::Get { key, timeout_ms } => {
                out.push(OP_GET);
                put_bytes(&mut out, key.as_bytes());
                out.extend_from_slice(&timeout_ms.to_le_bytes());
            }
            Request::Add { key, delta } => {
                out.push(OP_ADD);
                put_bytes(&mut out, key.as_bytes());
                out.extend_from_slice(&delta.to_le_bytes());
            }
            Request::CompareSet { key, expected, desired } => {
                out.push(OP_COMPARE_SET);
                put_bytes(&mut out, key.as_bytes());
                put_bytes(&mut out, expected);
                put_bytes(&mut out, desired);
            }
            Request::Delete { key } => {
                out.push(OP_DELETE);
                put_bytes(&mut out, key.as_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut r = Reader { bytes, pos: 1 };
        let request = match bytes.first() {
            Some(&OP_HELLO) => Request::Hello { version: r.u32()?, token: r.string()?, client: r.string()? },
            Some(&OP_SET) => Request::Set { key: r.string()?, value: r.bytes()? },
            Some(&OP_GET) => Request::Get { key: r.string()?, timeout_ms: r.u64()? },
            Some(&OP_ADD) => Request::Add { key: r.string()?, delta: r.u64()? as i64 },
            Some(&OP_COMPARE_SET) => {
                Request::CompareSet { key: r.string()?, expected: r.bytes()?, desired: r.bytes()? }
            }
            Some(&OP_DELETE) => Request::Delete { key: r.string()? },
            other => return Err(invalid(format!("unknown request op {other:?}"))),
        };
        r.finish()?;
        Ok(request)
    }
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Response::Ok => out.push(R_OK),
            Response::Value(v) => {
                out.push(R_VALUE);
                put_bytes(&mut out, v);
            }
            Response::Int(i) => {
                out.push(R_INT);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Response::Bool(b) => out.extend_from_slice(&[R_BOOL, u8::from(*b)]),
            Response::Timeout => out.push(R_TIMEOUT),
            Response::Refused(why) => {
                out.push(R_REFUSED);
                put_bytes(&mut out, why.as_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> io::Result<Self> {
        let mut r = Reader { bytes, pos: 1 };
        let response = match bytes.first() {
            Some(&R_OK) => Response::Ok,
            Some(&R_VALUE) => Response::Value(r.bytes()?),
            Some(&R_INT) => Response::Int(r.u64()? as i64),
            Some(&R_BOOL) => Response::Bool(r.take(1)?[0] != 0),
            Some(&R_TIMEOUT) => Response::Timeout,
            Some(&R_REFUSED) => Response::Refused(r.string()?),
            other => return Err(invalid(format!("unknown response tag {other:?}"))),
        };
        r.finish()?;
        Ok(response)
    }
}

/// Writes one length-prefixed frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| invalid("frame too large".into()))?;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one length-prefixed frame.
pub fn read_frame(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME_BYTES {
        return Err(invalid(format!("frame of {len} bytes (limit {MAX_FRAME_BYTES})")));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(payload)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| invalid("truncated message".into()))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?).map_err(|_| invalid("key is not UTF-8".into()))
    }
    fn finish(&self) -> io::Result<()> {
        if self.pos != self.bytes.len() {
            return Err(invalid("trailing bytes in message".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        let requests = [
            Request::Hello { version: 1, token: "t".into(), client: "rank 3".into() },
            Request::Set { key: "k".into(), value: vec![0, 255, 7] },
            Request::Get { key: "k".into(), timeout_ms: 1500 },
            Request::Add { key: "n".into(), delta: -3 },
            Request::CompareSet { key: "k".into(), expected: vec![], desired: b"x".to_vec() },
            Request::Delete { key: "k".into() },
        ];
        for request in requests {
            assert_eq!(Request::decode(&request.encode()).unwrap(), request);
        }
        let responses = [
            Response::Ok,
            Response::Value(vec![1, 2]),
            Response::Int(-9),
            Response::Bool(true),
            Response::Timeout,
            Response::Refused("no".into()),
        ];
        for response in responses {
            assert_eq!(Response::decode(&response.encode()).unwrap(), response);
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(Request::decode(&[99]).is_err());
        assert!(Request::decode(&[OP_SET, 9, 0, 0, 0, b'k']).is_err(), "truncated key");
        let mut extra = Request::Delete { key: "k".into() }.encode();
        extra.push(0);
        assert!(Request::decode(&extra).is_err());
        let mut huge = &[0xff, 0xff, 0xff, 0x7f][..];
        assert!(read_frame(&mut huge).is_err());
    }
}
