"""A small LLaVA-architecture captioner for ``shapes``, all transformers classes.

::

    pixel_values [B, 3, 64, 64]
      ─► CLIP vision tower (8-pixel patches: CLS + 8x8 tokens, ``vision_layers`` layers)
      ─► its last layer's grid tokens (the CLS token dropped) ─► LLaVA's 2-layer MLP projector
      ─► [B, 64, text_hidden] image tokens in front of the caption ─► a Llama decoder ─► caption

It is a ``LlavaForConditionalGeneration`` with a ``LlavaProcessor`` (``CLIPImageProcessor`` and the
word-level ``shapes`` tokenizer plus ``<image>``), saved together in one folder, so it loads and
splits like any local LLaVA (:class:`~intelliflow.models.vlm_adapters.LlavaSplit`). Its chat
template writes only the image: the caption follows the image tokens directly (the ``shapes``
vocabulary has no words for an instruction).
"""

from __future__ import annotations

from .captioner import build_tokenizer
from .vlm_adapters import LlavaSplit

#: the prompt: the image tokens alone
CHAT_TEMPLATE = ("{% for message in messages %}{% for part in message['content'] %}"
                 "{% if part['type'] == 'image' %}<image>{% endif %}{% endfor %}{% endfor %}")


def build_llava_captioner(words, image_size: int = 64, patch_size: int = 8, vision_hidden: int = 192,
                          vision_layers: int = 4, text_hidden: int = 192, text_layers: int = 3, heads: int = 4,
                          max_caption_tokens: int = 48, split: int | str | None = None) -> LlavaSplit:
    """A randomly initialised LLaVA captioner over ``words``, wrapped as a :class:`LlavaSplit`."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = build_tokenizer(words)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    grid = (image_size // patch_size) ** 2
    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=vision_hidden, num_hidden_layers=vision_layers,
                           num_attention_heads=heads, intermediate_size=4 * vision_hidden, image_size=image_size,
                           patch_size=patch_size),
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=text_hidden,
                         intermediate_size=4 * text_hidden, num_hidden_layers=text_layers, num_attention_heads=heads,
                         num_key_value_heads=heads, max_position_embeddings=grid + max_caption_tokens + 8,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default", projector_hidden_act="gelu")
    model = LlavaForConditionalGeneration(config)
    for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(model.generation_config, name, getattr(tokenizer, name))
    model.generation_config.max_new_tokens = max_caption_tokens
    images = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                                image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE)
    return LlavaSplit(model, processor, split=split, name="shapes-llava")


def save_llava_captioner(captioner: LlavaSplit, folder, card: str | None = None) -> None:
    """Weights, config, tokenizer and processor in one folder (``load_split_model(folder)`` reads it)."""
    from pathlib import Path

    folder = Path(folder)
    captioner.model.save_pretrained(folder)
    captioner.processor.save_pretrained(folder)
    if card:
        (folder / "README.md").write_text(card)
