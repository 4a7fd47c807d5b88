# The four ADE20K classes the toy ADE20K set draws (dit_mm/toydata/ade20k.py:
# the background and one per kind of shape), in ADE20K's order. The toy
# configs give them to the stock ADE20KDataset as `metainfo`, and mmseg maps
# every other label to 255 (ignored), so the heads predict four classes, not
# 150: a step costs a tenth (the 150-channel logits, upsampled and scored by
# three losses, were 80% of it) and mIoU averages the four classes alone (with
# 150, a pixel labelled as a class no val image holds added that class at IoU 0).
toy_ade20k_classes = ('wall', 'painting', 'tent', 'ball')
