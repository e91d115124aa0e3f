// One holder at a time per key, the others waiting their turn in order: what a per-credential
// threading.Lock is in the Python layer, for async code. Different keys never wait for each
// other, and a key's entry is dropped once nobody holds or waits for it.

export class KeyedMutex {
  #tails = new Map();

  /** Run `fn` once every earlier holder of `key` has finished; resolves to what `fn` returns. */
  async run(key, fn) {
    const previous = this.#tails.get(key);
    let release;
    const mine = new Promise((resolve) => {
      release = resolve;
    });
    this.#tails.set(key, mine);
    try {
      if (previous !== undefined) await previous;
      return await fn();
    } finally {
      if (this.#tails.get(key) === mine) this.#tails.delete(key);
      release();
    }
  }

  /** How many keys are held or waited for (for tests and diagnostics). */
  get size() {
    return this.#tails.size;
  }
}
