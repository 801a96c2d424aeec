"""Tiny random-weight GroundingDINO and SAM (transformers classes, small configs), built in code."""

import torch

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "dog", "cat", "the", "red", "ball", "person"]


def tiny_bert_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]")


def tiny_grounding_dino(seed=0):
    import transformers
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SwinConfig,
    )

    # transformers >= 5 has a PIL backend (no torchvision here); older versions have only the plain class
    image_processor_cls = getattr(transformers, "GroundingDinoImageProcessorPil", None) or \
        transformers.GroundingDinoImageProcessor
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=2, out_indices=[2, 3, 4])
    text = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, num_queries=10, encoder_layers=1,
                                 decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                                 encoder_attention_heads=2, decoder_attention_heads=2, d_model=32,
                                 encoder_n_points=1, decoder_n_points=1, max_text_len=32)
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    processor = GroundingDinoProcessor(image_processor=image_processor_cls(size={"shortest_edge": 64,
                                                                                 "longest_edge": 96}),
                                       tokenizer=tiny_bert_tokenizer())
    return model, processor


def tiny_sam(seed=0):
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    vision = SamVisionConfig(hidden_size=16, output_channels=8, num_hidden_layers=1, num_attention_heads=2,
                             image_size=64, patch_size=16, mlp_dim=32, global_attn_indexes=[0], window_size=2,
                             num_pos_feats=4)
    prompt = SamPromptEncoderConfig(hidden_size=8, image_size=64, patch_size=16, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, mlp_dim=16,
                                   iou_head_hidden_dim=8)
    torch.manual_seed(seed)
    model = SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)).eval()
    with torch.no_grad():  # SAM's init is near zero (every probability ~0.5): give the masks some structure
        for p in model.parameters():
            p.normal_(0.0, 1.0)
    import transformers

    image_processor_cls = getattr(transformers, "SamImageProcessorPil", None) or SamImageProcessor
    image_processor = image_processor_cls(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                        mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})
    return model, SamProcessor(image_processor=image_processor)
