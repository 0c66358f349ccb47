//! Just enough of Python's pickle format (protocols 0-4 opcodes that plain data uses) to read
//! CIFAR-10's python batches: dicts, lists, tuples, ints, strings and bytes, and numpy arrays,
//! whose reduce calls are kept as data (`Object`) rather than executed. Nothing is ever called.
use std::collections::HashMap;

/// A decoded value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// A global reference `module.name`.
    Global(String),
    /// `callable(*args)` with the state a BUILD gave it.
    Object {
        callable: Box<Value>,
        args: Box<Value>,
        state: Option<Box<Value>>,
    },
    Mark,
}

impl Value {
    /// The entry of a dict under a bytes or str key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items.iter().find_map(|(k, v)| match k {
                Value::Bytes(b) if b == key.as_bytes() => Some(v),
                Value::Str(s) if s == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }
}

/// Decodes one pickle; errors say which opcode at which offset was not understood.
pub fn parse(data: &[u8]) -> Result<Value, String> {
    let mut vm = Vm { data, pos: 0, stack: Vec::new(), memo: HashMap::new() };
    vm.run()
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl Vm<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("truncated pickle")?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("unterminated line")?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(text)
    }
    fn pop(&mut self) -> Result<Value, String> {
        self.stack.pop().ok_or_else(|| "stack underflow".to_string())
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self.stack.iter().rposition(|v| *v == Value::Mark).ok_or("no mark on the stack")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack.last_mut().ok_or_else(|| "stack underflow".to_string())
    }

    fn run(&mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v.into()))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v.into()))
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v.into()))
                }
                0x8a => {
                    let n = self.u8()? as usize; // LONG1: little-endian two's complement
                    let bytes = self.take(n)?;
                    let mut v: i64 = if bytes.last().is_some_and(|&b| b & 0x80 != 0) { -1 } else { 0 };
                    for &b in bytes.iter().rev() {
                        v = (v << 8) | i64::from(b);
                    }
                    self.stack.push(Value::Int(v))
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.stack.push(Value::Float(v))
                }
                b'U' | b'C' => {
                    let n = self.u8()? as usize; // SHORT_BINSTRING (py2 str) / SHORT_BINBYTES
                    let v = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(v))
                }
                b'T' | b'B' => {
                    let n = self.u32()? as usize; // BINSTRING / BINBYTES
                    let v = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(v))
                }
                b'X' | 0x8c => {
                    let n = if op == b'X' { self.u32()? as usize } else { self.u8()? as usize };
                    let v = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(v))
                }
                b'q' => {
                    let i = self.u8()?.into();
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = self.memo.len() as u32; // MEMOIZE
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' | b'j' => {
                    let i = if op == b'h' { self.u8()?.into() } else { self.u32()? };
                    let v = self.memo.get(&i).cloned().ok_or(format!("memo {i} not set"))?;
                    self.stack.push(v)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let items =
                        self.stack.split_off(self.stack.len().checked_sub(n).ok_or("stack underflow")?);
                    self.stack.push(Value::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items))
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(items) => items.push(v),
                        _ => return Err(format!("APPEND to a non-list at {at}")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(list) => list.extend(items),
                        _ => return Err(format!("APPENDS to a non-list at {at}")),
                    }
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = self.pop()?;
                        let k = self.pop()?;
                        vec![k, v]
                    } else {
                        self.pop_mark()?
                    };
                    match self.top()? {
                        Value::Dict(dict) => {
                            dict.extend(items.chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone())))
                        }
                        _ => return Err(format!("SETITEM on a non-dict at {at}")),
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(format!("{module}.{name}")))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(format!("{m}.{n}"))),
                        _ => return Err(format!("STACK_GLOBAL without names at {at}")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args))
                }
                b'b' => {
                    let state = self.pop()?;
                    match self.top()? {
                        Value::Object { state: slot, .. } => *slot = Some(Box::new(state)),
                        _ => return Err(format!("BUILD on a non-object at {at}")),
                    }
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x} at offset {at}")),
            }
        }
    }
}

/// Keeps a call as data, except `_codecs.encode(text, 'latin1')`, which is how Python 3 writes
/// bytes in protocol 2: it is turned back into the bytes.
fn reduce(callable: Value, args: Value) -> Value {
    if let (Value::Global(name), Value::Tuple(items)) = (&callable, &args) {
        if name == "_codecs.encode" {
            if let Some(Value::Str(text)) = items.first() {
                return Value::Bytes(text.chars().map(|c| c as u32 as u8).collect());
            }
        }
    }
    Value::Object { callable: Box::new(callable), args: Box::new(args), state: None }
}
