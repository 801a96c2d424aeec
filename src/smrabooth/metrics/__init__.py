"""The paper's nine evaluation metrics (supplementary 2.5), each following a named public reference.

clip_metrics: CLIP-T, CLIP-I, Temporal Consistency; dino: DINO-I; motion_fidelity + tracking: Motion
Fidelity; vbench: Subject Consistency; pickscore: PickScore; aesthetic: Aesthetic Quality; imaging:
Imaging Quality. runner ties them to videos, report writes tables and the HTML page, study the user study.
"""
