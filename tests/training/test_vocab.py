import torch
from tokenizers import Tokenizer
from transformers import AutoModel

from fanzha.training.vocab import prune_model_vocab, prune_tokenizer, select_pieces


def test_pruning_keeps_cjk_segmentation_and_embeddings(tiny_base) -> None:
    tok = Tokenizer.from_file(str(tiny_base / "tokenizer.json"))
    model = AutoModel.from_pretrained(str(tiny_base)).eval()
    text = "免费领取签名照"
    keep = select_pieces(tok, ["只用这几个字"], ascii_top=0)
    assert len(keep) < tok.get_vocab_size()
    pruned_tok = prune_tokenizer(tok, keep)
    before, after = tok.encode(text), pruned_tok.encode(text)
    assert before.tokens == after.tokens  # every CJK piece is kept, so Viterbi finds the same pieces
    assert [keep[i] for i in after.ids] == before.ids
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([before.ids])).last_hidden_state
        prune_model_vocab(model, keep)
        out = model(input_ids=torch.tensor([after.ids])).last_hidden_state
    torch.testing.assert_close(out, ref)
    assert model.config.vocab_size == len(keep)


def test_special_token_ids_follow_the_renumbering(tiny_base) -> None:
    tok = Tokenizer.from_file(str(tiny_base / "tokenizer.json"))
    keep = select_pieces(tok, [], ascii_top=0)
    pruned = prune_tokenizer(tok, keep)
    enc = pruned.encode("你好")
    assert enc.tokens[0] == "<s>" and enc.tokens[-1] == "</s>"
    assert pruned.token_to_id("<pad>") == keep.index(tok.token_to_id("<pad>"))
