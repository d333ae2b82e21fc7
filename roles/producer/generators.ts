/**
 * The original lab's generators: what `dist producer --type T` publishes,
 * and how often.
 */

/** One message to publish. */
export interface Publication {
  topic: string;
  value: unknown;
}

export interface Generator {
  /** One line for `--help`. */
  about: string;
  /** Default time between two rounds (ms). */
  intervalMs: number;
  /** The messages of one round. */
  next(random: () => number): Publication[];
}

const SUBJECTS = ["The broker", "A consumer", "The producer", "Every topic", "A subscriber"];
const VERBS = ["delivers", "retains", "publishes", "forwards", "announces"];
const OBJECTS = ["a message", "the last value", "news from Chisinau", "a new topic", "the tariffs"];
const OPERATORS = ["orange", "unite", "moldcell"];

function pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.floor(random() * items.length)];
}

export const GENERATORS: Readonly<Record<string, Generator>> = {
  currency: {
    about: "a random 0-40 on /currency every 100 ms",
    intervalMs: 100,
    next: (random) => [{ topic: "/currency", value: Math.floor(random() * 41) }],
  },
  msg: {
    about: "a random sentence on /msg every 200 ms",
    intervalMs: 200,
    next: (random) => [{
      topic: "/msg",
      value: `${pick(SUBJECTS, random)} ${pick(VERBS, random)} ${pick(OBJECTS, random)}.`,
    }],
  },
  telephony: {
    about: "a price per minute on /telephony/orange, /unite and /moldcell every second",
    intervalMs: 1000,
    next: (random) =>
      OPERATORS.map((operator) => ({
        topic: `/telephony/${operator}`,
        value: Math.round((0.1 + random() * 1.9) * 100) / 100,
      })),
  },
};

export const GENERATOR_NAMES: readonly string[] = Object.keys(GENERATORS);
