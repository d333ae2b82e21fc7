import { Decoder, Encoder } from "@msgpack/msgpack";
import { DistError } from "./errors.ts";
import { HEADER_BYTES, type OutBuffer } from "./frame.ts";

export type CodecName = "json" | "msgpack";
export const CODEC_NAMES: readonly CodecName[] = ["json", "msgpack"];

/** Turns messages into frame payloads and back. */
export interface Codec {
  readonly name: CodecName;
  /**
   * Appends one whole frame (length prefix and payload) to `out`.
   * @throws {DistError} FRAME_TOO_LARGE when the payload exceeds `maxFrame`
   * (nothing is appended), BAD_REQUEST when the value cannot be encoded.
   */
  writeFrame(out: OutBuffer, msg: unknown, maxFrame: number): void;
  /** @throws {DistError} BAD_REQUEST when the payload is not a valid message. */
  decode(payload: Uint8Array): unknown;
}

function tooLarge(len: number, maxFrame: number): DistError {
  return new DistError(
    "FRAME_TOO_LARGE",
    `Message of ${len} bytes exceeds the frame limit of ${maxFrame} bytes`,
  );
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** JSON text in UTF-8, encoded straight into the outbound buffer. */
export const jsonCodec: Codec = {
  name: "json",
  writeFrame(out, msg, maxFrame) {
    let text: string | undefined;
    try {
      text = JSON.stringify(msg);
    } catch (err) {
      throw new DistError(
        "BAD_REQUEST",
        `Cannot encode message as JSON: ${(err as Error).message}`,
      );
    }
    if (text === undefined) {
      throw new DistError("BAD_REQUEST", `Cannot encode ${typeof msg} as JSON`);
    }
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    const start = out.length;
    out.reserve(HEADER_BYTES + text.length * 3);
    const { written } = textEncoder.encodeInto(
      text,
      out.bytes.subarray(start + HEADER_BYTES),
    );
    if (written > maxFrame) throw tooLarge(written, maxFrame);
    out.setHeader(start, written);
    out.length = start + HEADER_BYTES + written;
  },
  decode(payload) {
    try {
      return JSON.parse(textDecoder.decode(payload));
    } catch (err) {
      throw new DistError("BAD_REQUEST", `Invalid JSON: ${(err as Error).message}`);
    }
  },
};

// One encoder/decoder per process: encoding and decoding are synchronous, so
// they are never used by two messages at once.
const mpEncoder = new Encoder({ ignoreUndefined: true });
const mpDecoder = new Decoder();

/** MessagePack. */
export const msgpackCodec: Codec = {
  name: "msgpack",
  writeFrame(out, msg, maxFrame) {
    let bytes: Uint8Array;
    try {
      bytes = mpEncoder.encodeSharedRef(msg);
    } catch (err) {
      throw new DistError(
        "BAD_REQUEST",
        `Cannot encode message as MessagePack: ${(err as Error).message}`,
      );
    }
    if (bytes.length > maxFrame) throw tooLarge(bytes.length, maxFrame);
    out.writeFrame(bytes);
  },
  decode(payload) {
    try {
      // Copy first: decoded binary values may be views of the input, and the
      // input is the reader's reusable buffer.
      return mpDecoder.decode(payload.slice());
    } catch (err) {
      throw new DistError("BAD_REQUEST", `Invalid MessagePack: ${(err as Error).message}`);
    }
  },
};

export function codecByName(name: string): Codec | undefined {
  if (name === "json") return jsonCodec;
  if (name === "msgpack") return msgpackCodec;
  return undefined;
}
