"""The runtime's tokenizer, in Python.

A port of llama2.c `run.c`: `build_tokenizer()` (reading tokenizer.bin) and
`encode()` (dummy prefix, codepoint lookup with byte fallback, greedy
highest-score pair merging, leftmost pair on ties).  Every token stream used by
the trainer and the evaluator comes from here, so training and evaluation see
exactly the tokens that the microformer runtime produces.
"""

from __future__ import annotations

import struct


class RunCTokenizer:
    def __init__(self, path: str):
        with open(path, "rb") as f:
            data = f.read()
        (self.max_token_length,) = struct.unpack_from("<i", data, 0)
        off = 4
        self.vocab: list[bytes] = []
        self.scores: list[float] = []
        while off < len(data):
            score, n = struct.unpack_from("<fi", data, off)
            off += 8
            self.vocab.append(data[off:off + n])
            off += n
            self.scores.append(score)
        self.vocab_size = len(self.vocab)
        # run.c looks strings up by bsearch over the sorted vocabulary; with
        # distinct piece strings this is a plain map (asserted here).
        self.lookup: dict[bytes, int] = {}
        for i, piece in enumerate(self.vocab):
            if piece in self.lookup:
                raise ValueError(f"duplicate piece {piece!r} in {path}")
            self.lookup[piece] = i
        self.dummy_prefix = self.lookup.get(b" ", -1)
        self._line_cache: dict[bytes, list[int]] = {}

    # -- run.c encode() -------------------------------------------------
    def _codepoints(self, text: bytes) -> list[int]:
        """Codepoint lookup with byte fallback, byte for byte as run.c."""
        lookup = self.lookup
        tokens: list[int] = []
        buf = bytearray()
        n = len(text)
        for i in range(n):
            c = text[i]
            if (c & 0xC0) != 0x80:
                buf = bytearray()
            buf.append(c)
            nxt = text[i + 1] if i + 1 < n else 0
            if (nxt & 0xC0) == 0x80 and len(buf) < 4:
                continue
            tid = lookup.get(bytes(buf), -1)
            if tid != -1:
                tokens.append(tid)
            else:
                tokens.extend(b + 3 for b in buf)
            buf = bytearray()
        return tokens

    def _merge(self, tokens: list[int]) -> list[int]:
        """Repeatedly merge the best pair (strictly greater score wins).

        Same result as run.c's quadratic loop: pair scores are kept in a list
        and only the two pairs next to a merge are recomputed; `list.index`
        of the maximum is the leftmost best pair, as run.c's `>` test gives.
        """
        vocab, lookup, scores = self.vocab, self.lookup, self.scores
        neg = -1e10  # run.c's initial best_score: a pair must score above it
        ninf = float("-inf")
        sc: list[float] = []
        ids: list[int] = []
        for i in range(len(tokens) - 1):
            tid = lookup.get(vocab[tokens[i]] + vocab[tokens[i + 1]], -1)
            ids.append(tid)
            sc.append(scores[tid] if tid != -1 and scores[tid] > neg else ninf)
        while sc:
            best = max(sc)
            if best == ninf:
                break
            k = sc.index(best)
            tokens[k] = ids[k]
            del tokens[k + 1]
            del sc[k]
            del ids[k]
            for i in (k - 1, k):
                if 0 <= i < len(tokens) - 1:
                    tid = lookup.get(vocab[tokens[i]] + vocab[tokens[i + 1]], -1)
                    ids[i] = tid
                    sc[i] = scores[tid] if tid != -1 and scores[tid] > neg else ninf
        return tokens

    def _merge_reference(self, tokens: list[int]) -> list[int]:
        """run.c's merge loop transcribed literally (slow; used in checks)."""
        vocab, lookup, scores = self.vocab, self.lookup, self.scores
        while True:
            best_score, best_id, best_idx = -1e10, -1, -1
            for i in range(len(tokens) - 1):
                tid = lookup.get(vocab[tokens[i]] + vocab[tokens[i + 1]], -1)
                if tid != -1 and scores[tid] > best_score:
                    best_score, best_id, best_idx = scores[tid], tid, i
            if best_idx == -1:
                break
            tokens[best_idx] = best_id
            del tokens[best_idx + 1]
        return tokens

    def encode_reference(self, text: str) -> list[int]:
        """encode() with the literal run.c merge loop (slow; for checks)."""
        data = text.encode("utf-8")
        if not data:
            return []
        return self._merge_reference([self.dummy_prefix] + self._codepoints(data))

    def encode_bytes(self, text: bytes, dummy_prefix: bool = True) -> list[int]:
        """run.c encode(text, bos=0, eos=0)."""
        if len(text) == 0:
            return []
        tokens = []
        if dummy_prefix:
            if self.dummy_prefix == -1:
                raise ValueError("tokenizer has no ' ' piece for the dummy prefix")
            tokens.append(self.dummy_prefix)
        tokens.extend(self._codepoints(text))
        return self._merge(tokens)

    def encode(self, text: str) -> list[int]:
        """Whole-text encoding, exactly run.c's encode() with bos=eos=0."""
        return self.encode_bytes(text.encode("utf-8"), dummy_prefix=True)

    def encode_linewise(self, text: str) -> list[int]:
        """Same result as encode(), computed one line at a time.

        No piece contains a newline (checked here), so no merge crosses one:
        the text's first line carries the dummy prefix, every newline is the
        byte token 0x0A + 3 and the lines in between are encoded independently
        (with a cache).
        """
        data = text.encode("utf-8")
        if not data:
            return []
        # BOS/EOS ("\n<s>\n", "\n</s>\n") are never produced by encode().
        if any(b"\n" in p for i, p in enumerate(self.vocab) if i not in (1, 2)):
            raise ValueError("a piece contains a newline; use encode()")
        nl = 0x0A + 3
        lines = data.split(b"\n")
        out: list[int] = []
        cache = self._line_cache
        for k, line in enumerate(lines):
            if k > 0:
                out.append(nl)
            if k == 0:
                if line:
                    out.extend(self.encode_bytes(line, dummy_prefix=True))
                else:
                    out.append(self.dummy_prefix)
                continue
            if not line:
                continue
            toks = cache.get(line)
            if toks is None:
                toks = self._merge(self._codepoints(line))
                cache[line] = toks
            out.extend(toks)
        return out

    def decode_piece(self, prev: int, tok: int) -> bytes:
        """run.c decode(): strip the space after BOS, raw bytes for <0xXX>."""
        piece = self.vocab[tok]
        if prev == 1 and piece.startswith(b" "):
            piece = piece[1:]
        if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
            try:
                return bytes([int(piece[3:5], 16)])
            except ValueError:
                pass
        return piece

    def decode(self, tokens: list[int]) -> str:
        out = bytearray()
        prev = 1
        for t in tokens:
            out += self.decode_piece(prev, t)
            prev = t
        return out.decode("utf-8", errors="replace")
