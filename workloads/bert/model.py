"""BERT (Devlin et al. 2019): token + position + segment embeddings, a post-LN encoder with GELU
MLPs, and the masked-LM head (dense + GELU + LayerNorm, then a decoder tied to the token
embeddings plus a bias), evaluated only at the masked positions, as BERT's pretraining does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from workloads.bert.masking import PAD
from workloads.layers import ACTIVATIONS, Encoder, EncoderConfig, init_normal

BERT_BASE = EncoderConfig(width=768, depth=12, n_heads=12, mlp_dim=3072, post_ln=True, activation="gelu",
                          norm_eps=1e-12, dropout=0.1)


class BertConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    vocab_size: int = Field(default=30_528, gt=0)  # bert-base-uncased's 30,522 padded to a multiple of 64
    max_len: int = Field(default=512, gt=0)  # positions
    n_segments: int = 2
    encoder: EncoderConfig = BERT_BASE
    init_std: float = 0.02


class MLMHead(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        width = cfg.encoder.width
        self.dense = nn.Linear(width, width)
        self.act = ACTIVATIONS[cfg.encoder.activation]
        self.norm = nn.LayerNorm(width, eps=cfg.encoder.norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))  # the decoder's; its weight is the embedding

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(self.act(self.dense(h))), embedding, self.bias)


class Bert(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.encoder.width
        self.tok = nn.Embedding(cfg.vocab_size, width)
        self.pos = nn.Embedding(cfg.max_len, width)
        self.seg = nn.Embedding(cfg.n_segments, width)
        self.emb_norm = nn.LayerNorm(width, eps=cfg.encoder.norm_eps)
        self.drop = nn.Dropout(cfg.encoder.dropout)
        self.encoder = Encoder(cfg.encoder)
        self.mlm = MLMHead(cfg)
        init_normal(self, std=cfg.init_std)

    def forward(self, tokens: torch.Tensor, segments: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Masked-LM logits (B, P, vocab) at `positions` (B, P) of `tokens` and `segments` (B, T)."""
        T = tokens.shape[1]
        x = self.tok(tokens) + self.pos(torch.arange(T, device=tokens.device)) + self.seg(segments)
        x = self.encoder(self.drop(self.emb_norm(x)), key_mask=tokens != PAD)
        h = x.gather(1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return self.mlm(h, self.tok.weight)
