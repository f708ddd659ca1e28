"""Images in, outputs out, around the torch core (:mod:`..core`): SimpleITK geometry and validation, regions of
interest and masks, pairs, stacks and cine sequences laid out as batches, the through-plane stage, metrics, QA
pictures and file I/O.
"""
