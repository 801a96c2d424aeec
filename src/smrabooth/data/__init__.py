"""Training data: the folder layouts the trainers read, the tools that prepare them, and the
transforms + caches the trainers use.

- `folders`: read (and check) subject and motion folders; find them in the authors' released layout.
- `subject`: image/mask transforms to the training size and the on-disk caches of encoded inputs.
- `masks`: post-processing of predicted masks (binarise, fill holes, keep the largest component).
- `segment`: text-prompted masks (GroundingDINO box -> SAM mask, the LangSAM recipe).
- `prepare_subject`, `prepare_motion`: build the folders from user photos and clips.
- `prompts`: the grid of subject x motion test prompts.
"""
