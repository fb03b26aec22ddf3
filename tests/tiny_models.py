"""Tiny, randomly initialised models of the three real architectures geovlm runs, built offline.

Each ``build_*`` function writes a complete model folder (config, safetensors weights, generation
config, tokenizer with the real special tokens and chat template, processor) that
``from_pretrained`` and `geovlm.backends.hf.HFBackend.load` accept, in well under a second.
Nothing is downloaded: the byte-level BPE tokenizer is trained here on a few sentences that
include the EN/JA/ZH disaster questions and answers, so those strings tokenize sensibly.

Random weights emit junk: tests built on these models assert shapes, determinism, equalities
and probabilities, never words. All seeds are fixed, so every build is identical.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    CLIPImageProcessor,
    CLIPVisionConfig,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GenerationConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2VLImageProcessor,
    Qwen3Config,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

__all__ = [
    "ANSWERS_EN",
    "ANSWERS_JA",
    "ANSWERS_ZH",
    "LABELS",
    "QUESTION_EN",
    "QUESTION_JA",
    "QUESTION_ZH",
    "build_gemma_text",
    "build_llava_qwen3",
    "build_lora_adapter",
    "build_qwen3_vl",
]

LABELS = ("fire", "flooding", "wind", "earthquake", "tsunami", "volcano")
QUESTION_EN = "What type of disaster occurred in this image?"
QUESTION_JA = "この画像ではどのような種類の災害が発生しましたか?"
QUESTION_ZH = "这张图片中发生了什么类型的灾害?"
ANSWERS_EN = tuple(f"A {label} disaster occurred in this image." for label in LABELS)
_JA_LABELS = ("火災", "洪水", "風災", "地震", "津波", "火山")
_ZH_LABELS = ("火灾", "洪水", "风灾", "地震", "海啸", "火山")
ANSWERS_JA = tuple(f"この画像では{label}災害が発生しました。" for label in _JA_LABELS)
ANSWERS_ZH = _ZH_LABELS

_CORPUS = [
    QUESTION_EN,
    QUESTION_JA,
    QUESTION_ZH,
    *ANSWERS_EN,
    *ANSWERS_JA,
    *ANSWERS_ZH,
    "Fire disaster. Flood disaster. Flooding. Wind damage after the hurricane.",
    "Describe the highlighted building in this aerial image.",
    "The building in the top left corner of the image is destroyed.",
    "A satellite image of a town after an earthquake, with roads and houses.",
    "You are a helpful assistant. The user asks a question about a picture.",
]

# Qwen3-VL-8B-Instruct's chat template (tokenizer_config.json / chat_template.json).
QWEN3_VL_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\\n\\n' }}
    {%- endif %}
    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n\
You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and \
arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \
\\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\\n' }}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- for message in messages %}
    {%- if message.role == "user" %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content_item in message.content %}
                {%- if 'text' in content_item %}
                    {{- content_item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and message.content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Qwen3's chat template (tools and reasoning branches as published), with one addition so the
# LLaVA processor can render list content: an image item becomes "<image>\n" (the LLaVA-1.5
# convention the vqwen3 recipe trained with), a text item its text.
QWEN3_LLAVA_TEMPLATE = """{%- macro render(content) %}
    {%- if content is string %}
        {{- content }}
    {%- else %}
        {%- for item in content %}
            {%- if item.type == 'image' %}
                {{- '<image>\\n' }}
            {%- elif 'text' in item %}
                {{- item.text }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
{%- endmacro %}
{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + render(messages[0].content) + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- set content = render(message.content) %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n')\
.split('<think>')[-1].lstrip('\\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index and (loop.last or reasoning_content) %}
            {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') \
+ '\\n</think>\\n\\n' + content.lstrip('\\n') }}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
"""

# Gemma 3's chat template (google/gemma-3-*-it); for text messages it renders as Gemma 2's does.
GEMMA_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_VOCAB = 640
_TEXT = {  # shared tiny decoder sizes; hidden >= 64 for bitsandbytes' CPU 4-bit kernels
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 4096,
}


def _tokenizer(specials: list[str], **roles: str) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on the corpus, with ``specials`` as atomic special tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB - 64,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, padding_side="left", **roles)
    fast.add_special_tokens({"additional_special_tokens": specials})
    return fast


def _vocab_size(tokenizer: PreTrainedTokenizerFast) -> int:
    """Embedding rows: the tokenizer's size rounded up to a multiple of 64."""
    return -(-len(tokenizer) // 64) * 64


def _save(model: torch.nn.Module, processor: object, folder: Path, **generation: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(do_sample=False, **generation)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_qwen3_vl(folder: Path, width: int = 64, depth: int = 2) -> Path:
    """Save a tiny `Qwen3VLForConditionalGeneration` and stock `Qwen3VLProcessor` to ``folder``.

    Patch 16, merge 2, temporal patch 2 like Qwen3-VL-8B; a 64x64 image is 4 image tokens.
    `width` (hidden size) and `depth` (layers) of both towers scale the model up for benchmarks
    that need a chip to cost the model more.
    """
    specials = [
        *_QWEN_SPECIALS,
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
        "<think>",
        "</think>",
    ]
    tokenizer = _tokenizer(specials, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    image_processor = Qwen2VLImageProcessor(
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        size={"shortest_edge": 32 * 32, "longest_edge": 1024 * 1024},
    )
    video_processor = Qwen3VLVideoProcessor(
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    processor = Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN3_VL_TEMPLATE,
    )
    config = Qwen3VLConfig(
        text_config={
            **_TEXT,
            "hidden_size": width,
            "intermediate_size": 2 * width,
            "num_hidden_layers": depth,
            "vocab_size": _vocab_size(tokenizer),
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": depth,
            "hidden_size": width,
            "intermediate_size": 2 * width,
            "num_heads": 4,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": width,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config).eval()
    return _save(
        model,
        processor,
        folder,
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )


def build_llava_qwen3(folder: Path) -> Path:
    """Save a tiny LLaVA (CLIP vision tower, Qwen3 text model) and `LlavaProcessor` to ``folder``.

    Images are resized and cropped to 64x64: 16 patches, 16 image tokens (CLS stripped).
    """
    specials = [*_QWEN_SPECIALS, "<think>", "</think>", "<image>"]
    tokenizer = _tokenizer(specials, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 64},
        crop_size={"height": 64, "width": 64},
        do_center_crop=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=16,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=QWEN3_LLAVA_TEMPLATE,
    )
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=64,
            patch_size=16,
        ),
        text_config=Qwen3Config(
            **_TEXT, vocab_size=_vocab_size(tokenizer), pad_token_id=ids["<|endoftext|>"]
        ),
        image_token_index=ids["<image>"],
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=16,
    )
    torch.manual_seed(1)
    model = LlavaForConditionalGeneration(config).eval()
    return _save(
        model,
        processor,
        folder,
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )


def build_gemma_text(folder: Path) -> Path:
    """Save a tiny text-only `Gemma3ForCausalLM` (sliding and full attention) to ``folder``."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    tokenizer = _tokenizer(
        specials, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    tokenizer.chat_template = GEMMA_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    config = Gemma3TextConfig(
        **_TEXT,
        vocab_size=_vocab_size(tokenizer),
        sliding_window=128,
        layer_types=["sliding_attention", "full_attention"],
        pad_token_id=ids["<pad>"],
        bos_token_id=ids["<bos>"],
        eos_token_id=ids["<eos>"],
    )
    torch.manual_seed(2)
    model = Gemma3ForCausalLM(config).eval()
    return _save(
        model,
        tokenizer,
        folder,
        eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]],
        pad_token_id=ids["<pad>"],
        bos_token_id=ids["<bos>"],
    )


def build_lora_adapter(model_folder: Path, folder: Path, seed: int = 3) -> Path:
    """Save a random, non-zero LoRA adapter on the language model's attention of a tiny model.

    Like LLaMA-Factory's adapters it wraps only language-model layers, never the vision tower.
    """
    from peft import LoraConfig, get_peft_model

    text_only = AutoConfig.from_pretrained(model_folder).model_type.startswith("gemma")
    auto = AutoModelForCausalLM if text_only else AutoModelForImageTextToText
    model = auto.from_pretrained(model_folder)
    torch.manual_seed(seed)
    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        init_lora_weights=False,
        target_modules=r".*(language_model|model\.layers).*\.(q_proj|k_proj|v_proj|o_proj)",
    )
    peft_model = get_peft_model(model, lora)
    peft_model.save_pretrained(folder)
    return folder
