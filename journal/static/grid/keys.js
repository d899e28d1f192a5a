// The device's signing key: made once per person and browser profile with WebCrypto,
// non-extractable, kept in IndexedDB. Ed25519 where the browser has it, ECDSA P-256 otherwise.
// The key id is the server's journal.ledger.entry.key_id: hex of SHA-256(alg "\n" public
// key)[:16].

import { read, write } from "./store.js";

const CONTEXT = new TextEncoder().encode("class-journal/entry/v1\n");
// Tests (and a person debugging a browser without Ed25519) may force the fallback.
const ALG_OVERRIDE = "class-journal.key-alg";

export function base64(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text);
}

function hex(bytes) {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((size, part) => size + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

async function describe(alg, pair, publicBytes) {
  const label = new TextEncoder().encode(`${alg}\n`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", concat(label, publicBytes)));
  return {
    alg,
    kid: hex(digest.slice(0, 16)),
    privateKey: pair.privateKey,
    publicKey: base64(publicBytes),
    created: new Date().toISOString(),
  };
}

async function generate() {
  if (localStorage.getItem(ALG_OVERRIDE) !== "ecdsa-p256") {
    try {
      const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
      const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
      return describe("ed25519", pair, raw);
    } catch (error) {
      // No Ed25519 in this browser: fall through to P-256.
    }
  }
  const pair = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["sign", "verify"],
  );
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
  return describe("ecdsa-p256", pair, spki);
}

// One key per person on this browser (the server registers each key to one account): a
// colleague signing in on the same computer gets their own. Versions before kept one key per
// browser under "device"; it is left alone: the server still verifies what it signed.
export async function deviceKey(author) {
  const name = `device:${author}`;
  const stored = await read("keys", name);
  if (stored) return stored;
  // Two tabs opening at once must not make two keys.
  return navigator.locks.request("class-journal-key", async () => {
    const again = await read("keys", name);
    if (again) return again;
    const key = await generate();
    await write("keys", key, name);
    return key;
  });
}

// DER of an ECDSA signature from WebCrypto's raw r || s (the leaf stores DER, DESIGN §5).
export function ecdsaDerFromRaw(raw) {
  if (raw.length !== 64) throw new TypeError("a raw P-256 signature is 64 bytes");
  const integer = (bytes) => {
    let start = 0;
    while (start < bytes.length - 1 && bytes[start] === 0) start += 1;
    let body = bytes.slice(start);
    if (body[0] & 0x80) body = concat(new Uint8Array([0]), body);
    return concat(new Uint8Array([0x02, body.length]), body);
  };
  const r = integer(raw.slice(0, 32));
  const s = integer(raw.slice(32));
  return concat(new Uint8Array([0x30, r.length + s.length]), r, s);
}

export async function sign(key, payloadBytes) {
  const message = concat(CONTEXT, payloadBytes);
  if (key.alg === "ed25519") {
    return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, message));
  }
  const raw = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    key.privateKey,
    message,
  );
  return ecdsaDerFromRaw(new Uint8Array(raw));
}
