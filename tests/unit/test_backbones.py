import pytest
import torch
from safetensors.torch import save_file

from transferkit.backbones import BACKBONES, create_backbone, download_weights, list_backbones
from transferkit.backbones.tv import ARCHS
from transferkit.errors import TransferkitError

SMALL = {"mlp": dict(in_features=12), "small_cnn": dict(in_channels=1), "conv4": dict(in_channels=1, image_size=16)}


def _input(name):
    return torch.randn(2, 12) if name == "mlp" else torch.randn(2, 1, 16, 16)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_backbones_follow_the_contract(name):
    bb = create_backbone(name, **SMALL[name])
    f = bb.features(_input(name))
    assert f.shape == (2, bb.num_features)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_backbones_follow_the_contract(name):
    bb = create_backbone(name).eval()
    assert bb(torch.randn(1, 3, 64, 64)).shape == (1, bb.num_features)


def test_every_registered_name_is_listed():
    assert set(ARCHS) | {"mlp", "small_cnn", "conv4", "hf_text", "fusion"} == set(list_backbones())
    assert list_backbones("res*") == ["resnet18", "resnet50"]


def test_unknown_backbone_suggests_the_closest_name():
    with pytest.raises(TransferkitError, match="Unknown backbone 'resnet19'. Did you mean 'resnet18'"):
        create_backbone("resnet19")


def test_unknown_backbone_argument_is_named():
    with pytest.raises(TransferkitError, match="Backbone 'mlp' has no argument 'hiden'"):
        create_backbone("mlp", hiden=3)


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_weights_round_trip(tmp_path, fmt):
    src = create_backbone("small_cnn", in_channels=1)
    path = tmp_path / f"w.{fmt}"
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(state, path) if fmt == "safetensors" else torch.save(state, path)
    dst = create_backbone("small_cnn", in_channels=1, weights=path)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k])


def test_weights_with_wrong_shapes_name_the_key(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(create_backbone("small_cnn", in_channels=3).state_dict(), path)
    with pytest.raises(TransferkitError, match="'blocks.0.0.weight' has shape \\[32, 3, 3, 3\\] in the file"):
        create_backbone("small_cnn", in_channels=1, weights=path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "obj": object()}, path)
    with pytest.raises(TransferkitError, match="Cannot read weights file"):
        create_backbone("mlp", weights=path)


def test_imagenet_weights_never_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(TransferkitError, match="not in the torch cache"):
        create_backbone("resnet18", weights="imagenet")


def test_imagenet_weights_from_torch_cache(tmp_path, monkeypatch):
    from transferkit.backbones.tv import imagenet_weights_file
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    ref = torchvision.models.mobilenet_v3_small(weights=None)
    path, _ = imagenet_weights_file("mobilenet_v3_small")
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)  # the full classifier checkpoint, as torchvision ships it
    bb = create_backbone("mobilenet_v3_small", weights="imagenet")
    assert torch.equal(bb.net.features[0][0].weight, ref.features[0][0].weight)


def test_download_weights_from_a_local_url(tmp_path):
    src = tmp_path / "src.safetensors"
    save_file({"w": torch.ones(3)}, src)
    from transferkit.backbones.weights import sha256

    dest = download_weights(src.as_uri(), tmp_path / "cache" / "w.safetensors", sha256_prefix=sha256(src)[:8])
    assert dest.read_bytes() == src.read_bytes()
    with pytest.raises(TransferkitError, match="wrong checksum"):
        download_weights(src.as_uri(), tmp_path / "cache" / "x.safetensors", sha256_prefix="00000000")
    assert not (tmp_path / "cache" / "x.safetensors").exists()


def test_timm_backbone_by_prefix():
    bb = create_backbone("timm/resnet10t").eval()
    assert bb(torch.randn(1, 3, 32, 32)).shape == (1, bb.num_features)


def test_hf_text_encoder_loads_packaged_minilm():
    bb = create_backbone("hf_text").eval()
    with torch.no_grad():
        f = bb.features(["a great kettle", "it broke after a week", "a great kettle"])
    assert f.shape == (3, 384) and torch.allclose(f[0], f[2])
    assert torch.cosine_similarity(f[0], f[1], dim=0) < 0.99


def test_hf_text_takes_a_fine_tuned_weights_file(tmp_path):
    from safetensors.torch import save_file

    bb = create_backbone("hf_text").eval()
    state = {f"backbone.{k}": v.clone() for k, v in bb.state_dict().items()}
    key = next(k for k in state if k.endswith("LayerNorm.weight"))
    state[key] += 0.5  # a "fine-tuned" encoder, as a run's model.safetensors holds it
    save_file(state, tmp_path / "model.safetensors")
    tuned = create_backbone("hf_text", weights=tmp_path / "model.safetensors")
    assert torch.equal(tuned.state_dict()[key[len("backbone."):]], state[key])


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A two-layer BERT (hidden size 8, with a pooler) saved beside the packaged MiniLM's tokenizer."""
    import shutil

    from transformers import BertConfig, BertModel

    from transferkit.backbones.hf import minilm_path

    path = tmp_path_factory.mktemp("tiny_bert")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_path() / name, path / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    return path


def test_hf_text_stages_and_lora_targets_leave_out_the_unused_pooler(tiny_bert):
    from transferkit.finetune.lora import default_targets

    bb = create_backbone("hf_text", weights=tiny_bert)
    assert bb.encoder.pooler is not None  # the checkpoint has one ...
    enc = bb.encoder
    assert bb.stages() == [enc.embeddings, *enc.encoder.layer]  # ... but it is no stage
    targets = default_targets(bb)
    assert targets and not any("pooler" in t for t in targets)
    assert len([t for t in targets if ".layer.1." in t]) == 6  # query, key, value, attention out, intermediate, out


@pytest.mark.parametrize("strategy,args,phase", [("partial", {"k": 1}, 0), ("discriminative", {"gradual": True}, 1),
                                                 ("adapters", {"stages": 2}, 0), ("lora", {"r": 2}, 0)])
def test_every_parameter_a_strategy_trains_on_hf_text_is_reached_by_the_loss(tiny_bert, strategy, args, phase):
    """partial k=1 must train the last transformer layer, gradual unfreezing's first unfrozen stage
    must be one, both adapters must sit where features() runs, LoRA must not adapt the pooler."""
    from transferkit.finetune import create_strategy
    from transferkit.heads import create_head
    from transferkit.model import TransferModel

    model = TransferModel(create_backbone("hf_text", weights=tiny_bert), create_head("linear", 8, 2))
    s = create_strategy(strategy, **args)
    model = s.prepare_model(model)
    groups = s.phases(model, 4, 0.01)[phase].groups
    trained = [p for g in groups for p in g["params"]]
    head = {id(p) for p in model.heads.parameters()}
    assert any(id(p) not in head for p in trained)  # some backbone parameter trains
    loss = torch.nn.functional.cross_entropy(model(["a great kettle", "it broke"]).logits, torch.tensor([1, 0]))
    loss.backward()
    unreached = [n for n, p in model.named_parameters() if any(p is q for q in trained) and p.grad is None]
    assert unreached == []


def test_minilm_stages_end_with_its_last_transformer_layer():
    from transferkit.finetune.lora import default_targets

    bb = create_backbone("hf_text")
    assert bb.stages()[-1] is bb.encoder.encoder.layer[-1] and len(bb.stages()) == 7
    assert len(default_targets(bb)) == 6 * 6
