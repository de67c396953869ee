//! Components crafted to make the compiler spend, generated rather than
//! stored: each wraps one core module in a component with nothing else, so
//! the runner compiles the module and only then finds no agent in it.
//! Shared by the runner's `compile_bounds` tests and `compile` benchmark, and
//! the uploads' tests (a compile bomb sent to a validator).

/// Nesting of [`nested_blocks`] that makes its function about 7 MiB of code,
/// just under wasmparser's limit on one function body (7,654,321 bytes).
pub const NESTED_BLOCKS_DEPTH: usize = 2_400_000;

/// Function count of the many-functions shape in the issue.
pub const MANY_FUNCTIONS: usize = 200_000;

/// A component whose one function nests `depth` empty `block`s: three bytes
/// of input per block, and per block a basic block and a control frame for
/// Cranelift.
pub fn nested_blocks(depth: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(3 * depth + 2);
    body.push(0x00); // no locals
    for _ in 0..depth {
        body.extend_from_slice(&[0x02, 0x40]); // block (empty type)
    }
    body.resize(body.len() + depth, 0x0b); // the blocks' ends
    body.push(0x0b); // the function's end
    component(&module(1, &body))
}

/// A component of `count` empty functions, each compiled on its own.
pub fn many_functions(count: usize) -> Vec<u8> {
    component(&module(count, &[0x00, 0x0b]))
}

/// A core module of `count` functions of type `[] -> []`, all with `body`.
fn module(count: usize, body: &[u8]) -> Vec<u8> {
    let mut types = leb128(1);
    types.extend_from_slice(&[0x60, 0x00, 0x00]);
    let mut functions = leb128(count);
    functions.resize(functions.len() + count, 0x00); // each of type 0
    let mut entry = leb128(body.len());
    entry.extend_from_slice(body);
    let mut code = leb128(count);
    for _ in 0..count {
        code.extend_from_slice(&entry);
    }
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(&mut module, 1, &types);
    section(&mut module, 3, &functions);
    section(&mut module, 10, &code);
    module
}

/// A component holding `module` as its only (core module) section.
fn component(module: &[u8]) -> Vec<u8> {
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(&mut component, 1, module);
    component
}

fn section(out: &mut Vec<u8>, id: u8, payload: &[u8]) {
    out.push(id);
    out.extend(leb128(payload.len()));
    out.extend_from_slice(payload);
}

fn leb128(mut value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = u8::try_from(value & 0x7f).unwrap_or(0);
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}
