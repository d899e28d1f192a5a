// RFC 8785 (JCS) for the values entries carry: objects, arrays, strings, safe integers,
// booleans and null. The bytes must equal journal.ledger.entry.canonical_json on the server:
// keys sorted by UTF-16 code units (the default sort of JavaScript strings), strings escaped
// as JSON.stringify does, no floats, no lone surrogates.

const MAX_NESTING = 32;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:[^\uD800-\uDBFF]|^)[\uDC00-\uDFFF]/;

function checkString(text) {
  const wellFormed = typeof text.isWellFormed === "function"
    ? text.isWellFormed()
    : !LONE_SURROGATE.test(text);
  if (!wellFormed) throw new TypeError("string contains a lone surrogate");
}

function write(value, out, depth) {
  if (depth > MAX_NESTING) throw new TypeError(`nested deeper than ${MAX_NESTING} levels`);
  if (value === null) {
    out.push("null");
  } else if (value === true || value === false) {
    out.push(String(value));
  } else if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new TypeError(`number ${value} is not a safe integer`);
    out.push(String(value));
  } else if (typeof value === "string") {
    checkString(value);
    out.push(JSON.stringify(value));
  } else if (Array.isArray(value)) {
    out.push("[");
    value.forEach((item, index) => {
      if (index) out.push(",");
      write(item, out, depth + 1);
    });
    out.push("]");
  } else if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    const keys = Object.keys(value).filter((key) => value[key] !== undefined).sort();
    out.push("{");
    keys.forEach((key, index) => {
      checkString(key);
      if (index) out.push(",");
      out.push(JSON.stringify(key), ":");
      write(value[key], out, depth + 1);
    });
    out.push("}");
  } else {
    throw new TypeError(`${typeof value} is not a JSON value entries may hold`);
  }
}

export function canonicalJson(value) {
  const out = [];
  write(value, out, 0);
  return out.join("");
}

export function canonicalBytes(value) {
  return new TextEncoder().encode(canonicalJson(value));
}
