"""A small word-level n-gram language model, trained at start-up on text every Python has.

The corpus is the prose of the standard library's own docstrings (:data:`CORPUS_MODULES`):
each docstring is split into paragraphs, paragraphs that hold code, tables or indented
lists are left out, and each remaining paragraph is one training document ending in the end
token :data:`EOS`. Nothing is read from the network or the disk beyond the installed
standard library, so the model is the same on every machine with the same Python version (a
different version's docstrings give a slightly different model). Under ``python -OO``
docstrings are gone and :meth:`NgramModel.from_stdlib` refuses to build an empty model.

Tokens are words (letters, digits and underscores, with an optional ``'s``-style suffix)
and the punctuation ``. , ; : ! ? ( )``. Generation samples the next token from the counts of
the longest context of up to ``order - 1`` tokens seen in training (backing off to shorter
contexts, down to single-token frequencies), optionally sharpened by a temperature; it ends at
:data:`EOS` or when the caller stops asking. Given the same random generator state, the same
context and temperature give the same tokens.

    model = NgramModel.from_stdlib(order=3)
    rng = random.Random(7)
    context = model.start_context([])
    token = model.next_token(context, rng)
"""

from __future__ import annotations

import bisect
import importlib
import inspect
import itertools
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BOS",
    "CORPUS_MODULES",
    "EOS",
    "NgramModel",
    "corpus_paragraphs",
    "count_prompt_tokens",
    "detokenize",
    "piece",
    "tokenize",
]

BOS = "<s>"
EOS = "</s>"

CORPUS_MODULES: tuple[str, ...] = (
    "argparse", "bisect", "calendar", "collections", "datetime", "difflib", "fractions",
    "functools", "heapq", "json", "logging", "pathlib", "queue", "random", "shlex",
    "statistics", "string", "textwrap", "threading",
)  # fmt: skip
"""Standard-library modules whose docstrings are the training text."""

_TOKEN = re.compile(r"[A-Za-z0-9_]+(?:'[a-z]+)?|[.,;:!?()]")
_PROMPT_TOKEN = re.compile(r"\w+|[^\w\s]")
_NO_SPACE_BEFORE = frozenset(".,;:!?)")
_SENTENCE_END = re.compile(r"[.!?]$")


def tokenize(text: str) -> list[str]:
    """The model's tokens in ``text`` (anything else, such as quotes or brackets, is skipped)."""
    return _TOKEN.findall(text)


def count_prompt_tokens(text: str) -> int:
    """How many tokens a prompt counts as: every word and every other non-space character,
    known to the model or not (what the server reports as ``prompt_tokens``)."""
    return len(_PROMPT_TOKEN.findall(text))


def piece(token: str, previous: str | None) -> str:
    """The text ``token`` adds after ``previous`` (None: the first token of an answer)."""
    if previous is None or token in _NO_SPACE_BEFORE or previous == "(":
        return token
    return " " + token


def detokenize(tokens: Iterable[str]) -> str:
    """Tokens back to text, spaced as :func:`piece` spaces them."""
    out: list[str] = []
    previous: str | None = None
    for token in tokens:
        out.append(piece(token, previous))
        previous = token
    return "".join(out)


def _docstrings(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    found = [inspect.getdoc(module) or ""]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            found.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            for member_name, member in sorted(vars(obj).items()):
                if not member_name.startswith("_") and inspect.isfunction(member):
                    found.append(inspect.getdoc(member) or "")
    return [doc for doc in found if doc]


def corpus_paragraphs(modules: Sequence[str] = CORPUS_MODULES) -> list[str]:
    """The prose paragraphs of ``modules``' docstrings, each on one line, in a fixed order.

    A paragraph is kept when none of its lines is indented or a doctest, it has at least six
    words and it ends a sentence.
    """
    paragraphs: list[str] = []
    for module_name in modules:
        for doc in _docstrings(module_name):
            for block in re.split(r"\n\s*\n", doc):
                lines = block.splitlines()
                if any(line.startswith((" ", "\t", ">>>", "...")) for line in lines):
                    continue
                text = " ".join(line.strip() for line in lines)
                if len(text.split()) >= 6 and _SENTENCE_END.search(text):
                    paragraphs.append(text)
    return paragraphs


@dataclass(frozen=True)
class _Choices:
    """The tokens seen after one context, with cumulative counts for sampling."""

    tokens: tuple[str, ...]
    counts: tuple[int, ...]
    cumulative: tuple[int, ...]

    @classmethod
    def of(cls, counter: Counter[str]) -> _Choices:
        tokens = tuple(counter)
        counts = tuple(counter[t] for t in tokens)
        return cls(tokens, counts, tuple(itertools.accumulate(counts)))


class NgramModel:
    """Counts of each token after each context of up to ``order - 1`` tokens.

    ``documents`` are token lists; each is padded with ``order - 1`` :data:`BOS` tokens in
    front and ends with :data:`EOS`. ``order`` must lie within 2..4.
    """

    def __init__(self, documents: Sequence[Sequence[str]], order: int = 3) -> None:
        if not 2 <= order <= 4:
            raise ValueError(f"the n-gram order must lie within 2..4, not {order}")
        if not any(documents):
            raise ValueError("no training text: an n-gram model needs at least one token")
        self.order = order
        counts: defaultdict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
        vocabulary: set[str] = set()
        n_tokens = 0
        for document in documents:
            vocabulary.update(document)
            n_tokens += len(document)
            padded = [BOS] * (order - 1) + list(document) + [EOS]
            for i in range(order - 1, len(padded)):
                for k in range(order):  # contexts of length 0 .. order-1
                    counts[tuple(padded[i - k : i])][padded[i]] += 1
        self._choices = {context: _Choices.of(counter) for context, counter in counts.items()}
        self.vocabulary: frozenset[str] = frozenset(vocabulary)
        """Every token the model can generate (besides :data:`EOS`)."""
        self.documents = len(documents)
        self.training_tokens = n_tokens

    @classmethod
    def from_stdlib(cls, order: int = 3, modules: Sequence[str] = CORPUS_MODULES) -> NgramModel:
        """The model trained on :func:`corpus_paragraphs` of ``modules``."""
        documents = [tokenize(p) for p in corpus_paragraphs(modules)]
        documents = [d for d in documents if d]
        if not documents:
            raise ValueError(
                "the standard library's docstrings are missing (python -OO?): no text to train "
                "the n-gram model on"
            )
        return cls(documents, order)

    @property
    def contexts(self) -> int:
        """How many distinct contexts (of every length) the model has counts for."""
        return len(self._choices)

    def start_context(self, prompt_tokens: Sequence[str]) -> list[str]:
        """The context a generation begins in: a new document (:data:`BOS` padding) followed by
        ``prompt_tokens``, of which only the last ``order - 1`` matter."""
        return [BOS] * (self.order - 1) + list(prompt_tokens)

    def _choices_for(self, context: Sequence[str]) -> _Choices:
        width = self.order - 1
        tail = tuple(context[-width:]) if width else ()
        for start in range(len(tail) + 1):  # longest known suffix first; () always exists
            found = self._choices.get(tail[start:])
            if found is not None:
                return found
        raise AssertionError("the empty context is always counted")  # pragma: no cover

    def next_token(
        self, context: Sequence[str], rng: random.Random, temperature: float = 1.0
    ) -> str:
        """Sample the token after ``context`` (:data:`EOS` ends the text).

        ``temperature`` 1 samples by the counts, 0 takes the most frequent token (the first
        seen on a tie), other values sample by counts raised to ``1 / temperature``.
        """
        choices = self._choices_for(context)
        if temperature <= 0:
            best = max(range(len(choices.tokens)), key=choices.counts.__getitem__)
            return choices.tokens[best]
        if temperature == 1.0:
            draw = rng.random() * choices.cumulative[-1]
            return choices.tokens[bisect.bisect_right(choices.cumulative, draw)]
        weights = [math.pow(c, 1.0 / temperature) for c in choices.counts]
        return rng.choices(choices.tokens, weights=weights)[0]

    def unigram_token(self, rng: random.Random) -> str:
        """A token drawn by its overall frequency, whatever came before: word salad."""
        return self.next_token((), rng)
