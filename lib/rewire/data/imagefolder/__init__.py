"""Streaming ImageNet-style folders: decode each image in DataLoader workers, augment as the DNW ImageNet recipe.

Why a second loader
-------------------
The rest of :mod:`rewire.data` decodes a dataset once into uint8 tensors that live on the
training device (:class:`rewire.data.BatchLoader`). ImageNet at 224 px would need about
190 GB that way, so this module reads the files every epoch instead: ``torch.utils.data``
worker processes open, decode and augment one image each, and the batches are collated,
pinned (when CUDA is present) and moved to the training device.

Layout (the standard ImageNet ``ImageFolder`` layout)::

    root/
      train/<class>/<image files>     classes = sorted names of the train/ subfolders
      val/<class>/<image files>       the same class folders as train/

An optional ``classes`` argument (a list of folder names, or a text file with one name per
line) restricts both splits to those classes and labels them ``0..len(classes)-1`` in the given
order: the 100-class ImageNet subset of the robust-binary paper (Liu et al. 2022, Appendix,
"Experimental settings": ImageNet100, the classes chosen by the Continuum library) is such a list.
:func:`scan_image_folder` checks the whole layout before anything is decoded and raises one
:class:`ImageFolderLayoutError` that shows the expected tree and what it found.

Augmentation (the DNW ImageNet recipe: the authors' public configs, allenai/dnw
``apps/large_scale``; DNW Section 2.4 describes the model): training images get
``RandomResizedCrop(224)`` and ``RandomHorizontalFlip``, validation images
``Resize(256)`` + ``CenterCrop(224)``; both then ``ToTensor`` and ``Normalize`` with the
ImageNet channel mean/std that the torchvision model documentation gives
(mean 0.485/0.456/0.406, std 0.229/0.224/0.225: :data:`rewire.data.IMAGENET_MEAN`/``_STD``).

Reproducibility. The training order of epoch ``e`` is ``DistributedSampler``'s permutation
for ``seed = order_seed`` and ``epoch = e``; the crop and flip of every image come from its own
``torch.Generator`` seeded by ``(augmentation_seed, e, image index)``. Batches therefore do not
depend on the number of worker processes nor on which worker decodes which image, and no global
random generator is touched. Workers additionally seed Python's ``random`` and numpy from their
torch seed (which the loader's seeded generator fixes), for any library code that draws from them.
``state_dict()`` records the next epoch and the seeds; resuming starts at the beginning of that
epoch (resuming in the middle of an epoch is not supported by this loader).

Where things live: :func:`read_class_list` and :func:`scan_image_folder` (the layout, checked),
:class:`TrainAugmentation` / :class:`EvalTransform` (the two transforms, per image),
:class:`ImageFolderLoader` (batches of one split), :func:`image_folder_loaders` (both splits
from one scan); the same two transforms on images held in memory as tensors (the robust-binary
ImageNet-100 path): :mod:`rewire.data.imagefolder.in_memory`.
"""

from rewire.data.imagefolder.in_memory import (
    CropBoxes,
    EvalCroppedImages,
    RandomResizedCropLoader,
    centre_crop,
    centre_crop_test,
    draw_crop_boxes,
    paste_resized,
    resized_crop,
)
from rewire.data.imagefolder.layout import (
    SPLIT_FOLDERS,
    ImageFolderIndex,
    ImageFolderLayoutError,
    read_class_list,
    scan_image_folder,
)
from rewire.data.imagefolder.loader import ImageFolderLoader, image_folder_loaders
from rewire.data.imagefolder.transforms import (
    DNW_IMAGENET_CROP,
    DNW_IMAGENET_RESIZE,
    EvalTransform,
    TrainAugmentation,
    random_resized_crop_box,
)

__all__ = [
    "CropBoxes",
    "EvalCroppedImages",
    "RandomResizedCropLoader",
    "centre_crop",
    "centre_crop_test",
    "draw_crop_boxes",
    "paste_resized",
    "resized_crop",
    "DNW_IMAGENET_CROP",
    "DNW_IMAGENET_RESIZE",
    "SPLIT_FOLDERS",
    "EvalTransform",
    "ImageFolderIndex",
    "ImageFolderLayoutError",
    "ImageFolderLoader",
    "TrainAugmentation",
    "image_folder_loaders",
    "random_resized_crop_box",
    "read_class_list",
    "scan_image_folder",
]
