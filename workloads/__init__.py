"""The workloads: one folder each, listed here by name and imported on first use.

`WORKLOADS.get("gpt2")` imports `workloads.gpt2`, whose registration fills in its specs;
`WORKLOADS.names()` answers from the list below without importing anything (shell completion
stays fast). A new workload folder adds its names here.
"""

from algobench.registry import Registry

WORKLOADS = Registry("workload", lazy={
    "gpt2": "workloads.gpt2",
    "vit": "workloads.vit", "vit_glu": "workloads.vit", "vit_post_ln": "workloads.vit", "vit_map": "workloads.vit",
    "bert": "workloads.bert", "bert_pre_ln": "workloads.bert", "bert_relu": "workloads.bert",
    "detr": "workloads.detr", "detr_group": "workloads.detr",
    "gnn": "workloads.gnn", "gnn_gelu": "workloads.gnn", "gnn_silu": "workloads.gnn",
    "gnn_model_size": "workloads.gnn",
    "tts": "workloads.tts", "tts_mse": "workloads.tts",
})
