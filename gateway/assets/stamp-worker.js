// The fan page's proof-of-work solver: a Web Worker, no build step.
//
// When an event is under pressure the gateway answers a join with a
// challenge; the page starts this worker, shows its progress, and joins
// again with the challenge and the counter it finds (schema/src/stamp.rs
// has the whole story, and the same layout in Rust).
//
// Messages
//   in   {challenge, difficulty}  the challenge's text form (114 lowercase
//                                 hex characters) and its difficulty in
//                                 leading zero bits, 0..32 (also carried in
//                                 the text, characters 48..50; may be left
//                                 out, and must agree when given)
//   out  {tries}                  every PROGRESS_EVERY tries
//        {counter, tries}         the answer: send `counter` with the join
//        {error}                  the input is not a challenge
// One challenge per message; the page terminates the worker to give up.
//
// The work: the first counter 0, 1, 2, ... such that
//   SHA-256(challenge || ':' || decimal(counter))
// begins with `difficulty` zero bits (read big-endian). Every byte is
// ASCII; the counter has no leading zeros. The first 64 bytes never change,
// so they are compressed once; each try then compresses one block (counters
// below 10,000) or one and a half (the last block is padding only, so its
// message schedule is made once).
//
// SHA-256 is written out here, synchronous and allocation-free per try:
// crypto.subtle.digest costs a promise per hash, far too slow for millions
// of ~120-byte inputs. Digits are counted up in place rather than printed.
'use strict';

/** The hash layout, word for word as schema/src/stamp.rs's LAYOUT. */
const LAYOUT = "sha256(challenge ':' decimal(counter)) v1";
const CHALLENGE_CHARS = 114;
/** Characters of the text form holding the difficulty byte, in hex. */
const DIFFICULTY_AT = 48;
const DIFFICULTY_BITS_MAX = 32;
const SEPARATOR = 0x3a; // ':'
const PROGRESS_EVERY = 50000;

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
/** The message schedule, shared by every compression. */
const W = new Int32Array(64);

/** The message schedule of `words[at..at + 16]`, into `w`. */
function expand(w, words, at) {
  for (let i = 0; i < 16; i++) w[i] = words[at + i];
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15], y = w[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
}

/** The 64 rounds of a compression with schedule `w` onto state `from`,
 *  written to `into` (which may be `from`). */
function rounds(into, from, w) {
  let a = from[0], b = from[1], c = from[2], d = from[3];
  let e = from[4], f = from[5], g = from[6], h = from[7];
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g; g = f; f = e; e = (d + t1) | 0;
    d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  into[0] = (from[0] + a) | 0; into[1] = (from[1] + b) | 0;
  into[2] = (from[2] + c) | 0; into[3] = (from[3] + d) | 0;
  into[4] = (from[4] + e) | 0; into[5] = (from[5] + f) | 0;
  into[6] = (from[6] + g) | 0; into[7] = (from[7] + h) | 0;
}

/** One SHA-256 compression of `words[at..at + 16]`. */
function compress(into, from, words, at) {
  expand(W, words, at);
  rounds(into, from, W);
}

// The message after its first 64 bytes ("tail"): the challenge's last 50
// characters, ':', the digits, 0x80, zeros, and the length in bits at the
// end of the last block. One or two blocks; when two, the second holds only
// padding and length (up to 13 digits), so its schedule is made once per
// digit count ("fixed").
const DIGITS_AT = CHALLENGE_CHARS + 1 - 64;

/** A solver for one challenge: buffers allocated once, reused per try. */
function makeSolver(challenge) {
  const head = new Int32Array(16);
  for (let i = 0; i < 16; i++) {
    head[i] = (challenge.charCodeAt(4 * i) << 24) | (challenge.charCodeAt(4 * i + 1) << 16) |
      (challenge.charCodeAt(4 * i + 2) << 8) | challenge.charCodeAt(4 * i + 3);
  }
  const midstate = new Int32Array(8);
  compress(midstate, IV, head, 0);
  const tail = new Uint8Array(128);
  for (let i = 64; i < CHALLENGE_CHARS; i++) tail[i - 64] = challenge.charCodeAt(i);
  tail[DIGITS_AT - 1] = SEPARATOR;
  return {
    midstate,
    tail,
    words: new Int32Array(32),
    state: new Int32Array(8),
    fixed: new Int32Array(64),
    digits: 0,
    blocks: 1,
    lastIsFixed: false,
  };
}

/** Big-endian words of `tail` from word `first` to word `last`. */
function pack(s, first, last) {
  const t = s.tail;
  for (let i = first; i <= last; i++) {
    s.words[i] = (t[4 * i] << 24) | (t[4 * i + 1] << 16) | (t[4 * i + 2] << 8) | t[4 * i + 3];
  }
}

/** Padding and length after the digits, and every word (the digit count
 *  changed). */
function layOut(s) {
  const end = DIGITS_AT + s.digits;
  s.tail.fill(0, end);
  s.tail[end] = 0x80;
  s.blocks = end + 9 <= 64 ? 1 : 2;
  const last = 64 * s.blocks;
  const bits = (64 + end) * 8;
  s.tail[last - 2] = bits >>> 8;
  s.tail[last - 1] = bits & 0xff;
  pack(s, 0, 16 * s.blocks - 1);
  s.lastIsFixed = s.blocks === 2 && end < 64;
  if (s.lastIsFixed) expand(s.fixed, s.words, 16);
}

/** Write `counter` in decimal. */
function setCounter(s, counter) {
  const text = String(counter);
  s.digits = text.length;
  for (let i = 0; i < text.length; i++) s.tail[DIGITS_AT + i] = text.charCodeAt(i);
  layOut(s);
}

/** Count up by one, in place: usually one digit and one word change. */
function increment(s) {
  const t = s.tail;
  let i = DIGITS_AT + s.digits - 1;
  while (i >= DIGITS_AT && t[i] === 0x39) t[i--] = 0x30;
  if (i < DIGITS_AT) {
    // 99...9 became 100...0: one digit more, so the padding moves.
    t[DIGITS_AT] = 0x31;
    t[DIGITS_AT + s.digits] = 0x30;
    s.digits += 1;
    layOut(s);
    return;
  }
  t[i] += 1;
  pack(s, i >>> 2, (DIGITS_AT + s.digits - 1) >>> 2);
}

/** The digest of the current counter, in `s.state`. */
function hash(s) {
  compress(s.state, s.midstate, s.words, 0);
  if (s.lastIsFixed) rounds(s.state, s.state, s.fixed);
  else if (s.blocks === 2) compress(s.state, s.state, s.words, 16);
}

/** The first counter that solves, reporting progress as it goes; -1 past
 *  the last exact JavaScript integer (never, in practice). */
function solve(challenge, difficulty, report) {
  const s = makeSolver(challenge);
  setCounter(s, 0);
  let progress = PROGRESS_EVERY;
  for (let counter = 0; counter < Number.MAX_SAFE_INTEGER; counter++) {
    if (counter === progress) {
      report(counter);
      progress += PROGRESS_EVERY;
    }
    if (difficulty === 0) return counter;
    hash(s);
    if (Math.clz32(s.state[0]) >= difficulty) return counter;
    increment(s);
  }
  return -1;
}

/** The whole digest for one counter, in hex (for tests against Rust). */
function stampDigestHex(challenge, counter) {
  const s = makeSolver(challenge);
  setCounter(s, counter);
  hash(s);
  let out = '';
  for (let i = 0; i < 8; i++) out += (s.state[i] >>> 0).toString(16).padStart(8, '0');
  return out;
}

/** The difficulty to solve at, or a string saying what is wrong. */
function checkInput(challenge, difficulty) {
  if (typeof challenge !== 'string' || challenge.length !== CHALLENGE_CHARS ||
      !/^[0-9a-f]*$/.test(challenge)) {
    return 'not a challenge: expected ' + CHALLENGE_CHARS + ' lowercase hex characters';
  }
  const bits = parseInt(challenge.slice(DIFFICULTY_AT, DIFFICULTY_AT + 2), 16);
  if (bits > DIFFICULTY_BITS_MAX) return 'difficulty above ' + DIFFICULTY_BITS_MAX + ' bits';
  if (difficulty !== undefined && difficulty !== bits) {
    return 'difficulty ' + difficulty + ' disagrees with the challenge (' + bits + ')';
  }
  return bits;
}

self.onmessage = (event) => {
  const { challenge, difficulty } = event.data || {};
  const bits = checkInput(challenge, difficulty);
  if (typeof bits === 'string') {
    postMessage({ error: bits });
    return;
  }
  const counter = solve(challenge, bits, (tries) => postMessage({ tries }));
  if (counter < 0) {
    postMessage({ error: 'no counter below 2^53 solves this challenge' });
    return;
  }
  postMessage({ counter, tries: counter + 1 });
};
