"""The LLM server's n-gram language model: trained on the standard library's docstrings,
deterministic given a seed, backing off to shorter contexts."""

from __future__ import annotations

import random

import pytest

from kanaria.sandbox.ngram import (
    BOS,
    EOS,
    NgramModel,
    corpus_paragraphs,
    count_prompt_tokens,
    detokenize,
    tokenize,
)


def _generate(model: NgramModel, seed: int, limit: int = 80) -> list[str]:
    rng, context, out = random.Random(seed), model.start_context([]), []
    while len(out) < limit and (token := model.next_token(context, rng)) != EOS:
        out.append(token)
        context.append(token)
    return out


def test_the_stdlib_model_is_built_from_prose_and_is_deterministic() -> None:
    paragraphs = corpus_paragraphs()
    assert len(paragraphs) > 300
    assert not any(">>>" in p for p in paragraphs)
    model = NgramModel.from_stdlib(order=3)
    assert model.documents == len(paragraphs) and len(model.vocabulary) > 1000
    assert model.contexts > len(model.vocabulary)
    first = [_generate(model, seed) for seed in range(5)]
    again = NgramModel.from_stdlib(order=3)
    assert [_generate(again, seed) for seed in range(5)] == first
    assert len({tuple(words) for words in first}) == 5  # different seeds, different texts
    for words in first:
        assert words and set(words) <= model.vocabulary
        assert tokenize(detokenize(words)) == words


def test_sampling_follows_the_counts_and_backs_off() -> None:
    model = NgramModel([["a", "b", "."], ["a", "b", "."], ["a", "c", "."]], order=2)
    assert model.next_token([BOS, "a"], random.Random(0), temperature=0) == "b"  # greedy
    draws = [model.next_token(["a"], random.Random(seed)) for seed in range(300)]
    assert set(draws) == {"b", "c"} and 150 <= draws.count("b") <= 250  # 2 : 1
    assert model.next_token(["."], random.Random(0)) == EOS
    # An unknown word: back off to the frequencies of all tokens.
    assert model.next_token(["zebra"], random.Random(1)) in {"a", "b", "c", ".", EOS}
    assert model.start_context(["x", "y"]) == [BOS, "x", "y"]


def test_text_and_prompt_tokens() -> None:
    assert tokenize("Return the value, (if any).") == ["Return", "the", "value", ",", "(", "if", "any", ")", "."]
    assert detokenize(["Return", "the", "value", ",", "(", "if", "any", ")", "."]) == "Return the value, (if any)."
    assert count_prompt_tokens("user: what's “this”?") == 9  # user : what ' s “ this ” ?
    with pytest.raises(ValueError, match="2..4"):
        NgramModel([["a"]], order=5)
    with pytest.raises(ValueError, match="no training text"):
        NgramModel([[]], order=2)
