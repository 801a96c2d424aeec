"""Training data: the folder layouts the trainers read, and the tools that prepare them.

- `folders`: read (and check) subject and motion folders; find them in the authors' released layout.
- `masks`: post-processing of predicted masks (binarise, fill holes, keep the largest component).
- `segment`: text-prompted masks (GroundingDINO box -> SAM mask, the LangSAM recipe).
- `prepare_subject`, `prepare_motion`: build the folders from user photos and clips.
- `prompts`: the grid of subject x motion test prompts.
"""
