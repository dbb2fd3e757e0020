"""The word cursor under the tasks' recursive-descent parsers: look at the next word, or take it if it is allowed."""

from __future__ import annotations

from collections.abc import Container


class WordCursor:
    """A position in a list of words; :meth:`take` raises ``ValueError`` at the first word the grammar refuses."""

    def __init__(self, words: list[str]):
        self.words, self.i = words, 0

    def peek(self) -> str | None:
        """The next word, or None at the end."""
        return self.words[self.i] if self.i < len(self.words) else None

    def take(self, allowed: Container[str]) -> str:
        """The next word, which must be in ``allowed``; the cursor moves past it."""
        word = self.peek()
        if word is None or word not in allowed:
            raise ValueError(f"unexpected {word!r} at word {self.i}")
        self.i += 1
        return word
