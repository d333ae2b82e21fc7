/**
 * The keys of a persistent session's rows in `mqtt.db` (journal.ts): a
 * delivery's (session number / subscription number / place) and a
 * subscription's or a QoS 2 id's (session number / number), base 36,
 * the last part zero-padded so that keys of one queue sort in its order.
 */

/**
 * The largest session number read back (2^40: a broker numbering 10,000
 * sessions a second reaches it in three years). A damaged or tampered row
 * past it is unreadable: numbered 2^53 − 1, every later session got 2^53
 * (`n + 1` is no longer exact there), and their rows shared one key
 * (hostile review 40a T6).
 */
export const MAX_SESSION_NO = 2 ** 40;

/** Whether `n` is a session number a broker can have given. */
export function isSessionNo(n: unknown): n is number {
  return Number.isSafeInteger(n) && (n as number) >= 0 && (n as number) <= MAX_SESSION_NO;
}

/** Digits of a row's place in its key (base 36): keys of one queue sort in its order. */
const PLACE_DIGITS = 10;

/**
 * A row's key: the session's number, the subscription's (0: in flight),
 * the row's place, all base 36 (the place zero-padded).
 */
export function deliveryKey(session: number, sub: number, n: number): string {
  return `${session.toString(36)}/${sub.toString(36)}/${
    n.toString(36).padStart(PLACE_DIGITS, "0")
  }`;
}

/** A subscription's key: the session's number, the subscription's (zero-padded), base 36. */
export function subscriptionKey(session: number, sub: number): string {
  return `${session.toString(36)}/${sub.toString(36).padStart(PLACE_DIGITS, "0")}`;
}

/** The subscription number of a key of session number `session` (its base 36 and `/`), if it is one. */
export function subscriptionNumber(key: string, session: string): number | undefined {
  const tail = key.slice(session.length + 1);
  const n = tail.length === PLACE_DIGITS && NUMBER.test(tail) ? parseInt(tail, 36) : 0;
  return n > 0 && Number.isSafeInteger(n) && key.startsWith(`${session}/`) ? n : undefined;
}

const NUMBER = /^[0-9a-z]+$/;

/** A subscription's key read back, or undefined when it is not one. */
export function readSubscriptionKey(key: string): { session: number; sub: number } | undefined {
  const numbers = readKey(key, 2);
  return numbers === undefined || numbers[1] === 0
    ? undefined
    : { session: numbers[0], sub: numbers[1] };
}

/** A row's key read back, or undefined when it is not one. */
export function readDeliveryKey(
  key: string,
): { session: number; sub: number; n: number } | undefined {
  const numbers = readKey(key, 3);
  return numbers === undefined
    ? undefined
    : { session: numbers[0], sub: numbers[1], n: numbers[2] };
}

/** The `count` numbers of a key (the last zero-padded), or undefined when it is not one. */
function readKey(key: string, count: number): number[] | undefined {
  const parts = key.split("/");
  if (parts.length !== count || parts[count - 1].length !== PLACE_DIGITS) return undefined;
  const numbers = parts.map((p) => NUMBER.test(p) ? parseInt(p, 36) : NaN);
  return isSessionNo(numbers[0]) && numbers.every(Number.isSafeInteger) ? numbers : undefined;
}
