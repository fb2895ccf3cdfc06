"""Tiny random-initialised Hugging Face captioners built in code (no downloads) for the tests."""

import torch
from transformers import (BlipConfig, BlipForConditionalGeneration, GitConfig, GitForCausalLM, GPT2Config,
                          GPT2LMHeadModel, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig, ViTModel)

from intelliflow.data.captions import vocabulary
from intelliflow.models.captioner import build_tokenizer

PAD, BOS, EOS = 0, 1, 2


def tokenizer():
    return build_tokenizer(vocabulary())


def tiny_ved(seed=0):
    torch.manual_seed(seed)
    tok = tokenizer()
    enc = ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                    image_size=32, patch_size=8)
    dec = GPT2Config(vocab_size=len(tok), n_positions=40, n_embd=32, n_layer=2, n_head=2,
                     add_cross_attention=True, is_decoder=True, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = BOS, PAD, EOS
    model = VisionEncoderDecoderModel(config=config, encoder=ViTModel(enc, add_pooling_layer=False),
                                      decoder=GPT2LMHeadModel(dec)).eval()
    model.generation_config.decoder_start_token_id = BOS
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = PAD
    return model, tok


def tiny_blip(seed=0):
    torch.manual_seed(seed)
    tok = tokenizer()
    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=64,
                         bos_token_id=BOS, sep_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD))
    return BlipForConditionalGeneration(config).eval(), tok


def tiny_git(seed=0):
    torch.manual_seed(seed)
    tok = tokenizer()
    config = GitConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                           image_size=32, patch_size=8),
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=64, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)
    model = GitForCausalLM(config).eval()
    model.generation_config.bos_token_id, model.generation_config.eos_token_id = BOS, EOS
    model.generation_config.pad_token_id = PAD
    return model, tok
