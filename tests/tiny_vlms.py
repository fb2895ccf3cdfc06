"""Tiny random-initialised image-text-to-text models built in code (no downloads), each saved with
its processor to a folder, as a user's local model folder would be."""

from pathlib import Path

import torch

from intelliflow.data.captions import vocabulary
from intelliflow.models.captioner import build_tokenizer

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
              image_size=32, patch_size=8)
LLAMA = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=2, max_position_embeddings=256)


def _tokenizer(*special):
    tok = build_tokenizer(vocabulary())
    tok.add_special_tokens({"additional_special_tokens": list(special)})
    return tok


def _finish(model, tok, processor, folder):
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)


def _text(tok, **extra):
    return dict(LLAMA, vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, **extra)


def llava(folder, seed=0, feature_layer=-2):
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    torch.manual_seed(seed)
    tok = _tokenizer("<image>")
    config = LlavaConfig(vision_config=dict(VISION, model_type="clip_vision_model"),
                         text_config=dict(_text(tok), model_type="llama"),
                         image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=feature_layer,
                         vision_feature_select_strategy="default")
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=8,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return _finish(LlavaForConditionalGeneration(config), tok, processor, folder)


def llava_next(folder, seed=0):
    from transformers import (LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextImageProcessor,
                              LlavaNextProcessor)

    torch.manual_seed(seed)
    tok = _tokenizer("<image>")
    pinpoints = [[32, 64], [64, 32], [64, 64]]
    config = LlavaNextConfig(vision_config=dict(VISION, model_type="clip_vision_model"),
                             text_config=dict(_text(tok), model_type="llama"),
                             image_token_index=tok.convert_tokens_to_ids("<image>"), image_grid_pinpoints=pinpoints,
                             vision_feature_layer=-1, vision_feature_select_strategy="default")
    images = LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                     image_grid_pinpoints=pinpoints)
    processor = LlavaNextProcessor(image_processor=images, tokenizer=tok, patch_size=8,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1)
    return _finish(LlavaNextForConditionalGeneration(config), tok, processor, folder)


def paligemma(folder, seed=0):
    from transformers import (PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                              SiglipImageProcessor)

    torch.manual_seed(seed)
    tok = _tokenizer("<image>")
    text = dict(_text(tok), model_type="gemma", head_dim=16)
    config = PaliGemmaConfig(vision_config=dict(VISION, model_type="siglip_vision_model", projection_dim=32),
                             text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                             projection_dim=32)
    images = SiglipImageProcessor(size={"height": 32, "width": 32})
    images.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor=images, tokenizer=tok)
    return _finish(PaliGemmaForConditionalGeneration(config), tok, processor, folder)


def idefics3(folder, seed=0, family="Idefics3"):
    import transformers

    Config, Model = (getattr(transformers, f"{family}{part}") for part in ("Config", "ForConditionalGeneration"))
    Images, Processor = transformers.Idefics3ImageProcessor, getattr(transformers, f"{family}Processor")
    torch.manual_seed(seed)
    tok = _tokenizer("<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>")
    config = Config(vision_config=dict(VISION, model_type=f"{family.lower()}_vision"),
                            text_config=dict(_text(tok), model_type="llama"), scale_factor=2,
                            image_token_id=tok.convert_tokens_to_ids("<image>"))
    images = Images(do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    extra = {"video_processor": transformers.SmolVLMVideoProcessor()} if family == "SmolVLM" else {}
    processor = Processor(image_processor=images, tokenizer=tok, image_seq_len=4, **extra)
    return _finish(Model(config), tok, processor, folder)


def smolvlm(folder, seed=0):
    return idefics3(folder, seed, family="SmolVLM")


def qwen2_vl(folder, seed=0):
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    torch.manual_seed(seed)
    tok = _tokenizer("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                     "<|video_pad|>")
    ids = {name: tok.convert_tokens_to_ids(name) for name in ("<|image_pad|>", "<|video_pad|>",
                                                               "<|vision_start|>", "<|vision_end|>")}
    text = dict(_text(tok), rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                             "rope_theta": 10000.0})
    config = Qwen2VLConfig(vision_config=dict(depth=3, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2,
                                              patch_size=4, spatial_merge_size=2, temporal_patch_size=2),
                           text_config=text, image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                           vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    images = Qwen2VLImageProcessor(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16,
                                   max_pixels=32 * 32)
    processor = Qwen2VLProcessor(image_processor=images, tokenizer=tok, video_processor=Qwen2VLVideoProcessor())
    return _finish(Qwen2VLForConditionalGeneration(config), tok, processor, folder)


def blip2(folder, seed=0, language="opt"):
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor

    torch.manual_seed(seed)
    tok = _tokenizer("<image>")
    config = Blip2Config(vision_config=dict(VISION), num_query_tokens=8,
                         qformer_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                             intermediate_size=64, encoder_hidden_size=32, vocab_size=len(tok)),
                         text_config=dict(model_type="opt", vocab_size=len(tok), hidden_size=32, ffn_dim=64,
                                          num_hidden_layers=2, num_attention_heads=2, word_embed_proj_dim=32,
                                          max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
                         if language == "opt" else
                         dict(model_type="t5", vocab_size=len(tok), d_model=32, d_kv=16, d_ff=64, num_layers=1,
                              num_heads=2, decoder_start_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id),
                         image_token_index=tok.convert_tokens_to_ids("<image>"))
    images = BlipImageProcessor(size={"height": 32, "width": 32})
    processor = Blip2Processor(image_processor=images, tokenizer=tok, num_query_tokens=8)
    return _finish(Blip2ForConditionalGeneration(config), tok, processor, folder)
