"""Serve the YOLOv8 room detector: the handler functions of SageMaker's PyTorch inference container.

model.tar.gz holds what train.py wrote: model.pth (plain weights), yolov8<size>.yaml (the trained
architecture), model_info.json (class names, image size), best.pt / last.pt, and code/ (this file,
requirements.txt). model_fn builds the network from the yaml and loads model.pth with
torch.load(weights_only=True): serving never unpickles a checkpoint. ultralytics is kept offline.

Requests (Content-Type): image/png or image/jpeg, one floor plan of any size and mode.
Response (Accept: application/json):
    {"image": {"width": 640, "height": 480},
     "boxes": [{"class": "room", "class_id": 0, "confidence": 0.91, "xyxy": [12.0, 30.5, 200.0, 310.0]}, ...]}
xyxy is the box's left, top, right and bottom edge in pixels of the image as sent; boxes are sorted
by confidence, highest first; an image with no room gives "boxes": []. Boxes below confidence 0.25
are dropped (set ROOM_DETECTION_CONFIDENCE in the model's Environment to change that).

Bad requests raise InvalidInputError (400: empty, truncated or undecodable image),
UnsupportedContentTypeError (415) or UnsupportedAcceptError (406): sagemaker-inference answers a
BaseInferenceToolkitError with its status_code and message instead of a 500, and the model server
keeps serving.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass

# before ultralytics is imported: serving never downloads, and its settings file goes to a writable
# temporary folder (a serverless endpoint's home is read-only)
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(tempfile.gettempdir(), "ultralytics-config"))

import torch  # noqa: E402

from inference_errors import InferenceRequestError, UnsupportedAcceptError, UnsupportedContentTypeError


JSON = "application/json"
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG"}
ACCEPTED = "image/png, image/jpeg"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
MAX_IMAGE_PIXELS = 8192 * 8192  # refuse to decode larger images (a small PNG can inflate to gigabytes)
CONFIDENCE_THRESHOLD = float(os.environ.get("ROOM_DETECTION_CONFIDENCE", "0.25"))  # ultralytics' default
IOU_THRESHOLD = 0.7  # non-maximum suppression, ultralytics' default
MAX_DETECTIONS = 300


class InvalidInputError(InferenceRequestError):
    """The body is empty, truncated, or not a PNG or JPEG image."""

    status_code = 400


@dataclass
class LoadedModel:
    yolo: object  # ultralytics.YOLO around the network built from the yaml
    class_names: list[str]
    imgsz: int
    device: str


@dataclass
class Detections:
    width: int
    height: int
    boxes: list[dict]


def model_fn(model_dir):
    """Build the trained architecture, load model.pth (weights only) onto the GPU if there is one, else the CPU."""
    from ultralytics import YOLO

    info_path = os.path.join(model_dir, "model_info.json")
    if not os.path.isfile(info_path):
        raise FileNotFoundError(f"{info_path} is missing: model.tar.gz must hold the model_info.json that train.py writes")
    with open(info_path) as f:
        info = json.load(f)
    config_path = os.path.join(model_dir, info["config"])
    weights_path = os.path.join(model_dir, info.get("weights", "model.pth"))
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: model.tar.gz must hold the files train.py writes")
    yolo = YOLO(config_path, task="detect")  # a fresh network of the trained shape and class count
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    yolo.model.load_state_dict(state_dict)
    class_names = list(info["class_names"])
    yolo.model.names = dict(enumerate(class_names))
    yolo.model.eval()
    loaded = LoadedModel(yolo, class_names, int(info["imgsz"]), "cuda:0" if torch.cuda.is_available() else "cpu")
    # the first prediction sets up ultralytics' predictor (seconds): pay that now, not in the first request
    from PIL import Image

    predict_fn(Image.new("RGB", (loaded.imgsz, loaded.imgsz), "white"), loaded)
    return loaded


def _media_type(header) -> str:
    return (header or "").split(";")[0].strip().lower()


def _decode_image(body: bytes, media_type: str):
    """A PNG or JPEG body -> RGB PIL image; anything else -> InvalidInputError.

    The format is told by the file's signature and decoded by that format's PIL plugin directly, not by
    Image.open: ultralytics replaces Image.open with one that pip-installs a HEIF plugin whenever a body
    is not a known format, which a bad request must never trigger.
    """
    from PIL import Image, JpegImagePlugin, PngImagePlugin

    if not body:
        raise InvalidInputError(f"The body is empty; send one {ACCEPTED} image.")
    if body.startswith(PNG_SIGNATURE):
        decoder = PngImagePlugin.PngImageFile
    elif body.startswith(JPEG_SIGNATURE):
        decoder = JpegImagePlugin.JpegImageFile
    else:
        raise InvalidInputError(f"The body is not a PNG or JPEG file (it starts with {body[:8]!r}); send one "
                                f"{ACCEPTED} image.")
    try:
        with decoder(io.BytesIO(body)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise InvalidInputError(f"The image is {image.width}x{image.height} pixels; send at most "
                                        f"{MAX_IMAGE_PIXELS} pixels.")
            image.load()  # decode now, so a truncated file fails here rather than inside the model
            return image.convert("RGB")
    except InvalidInputError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise InvalidInputError(f"The body is not a readable {media_type} image ({error}); send a complete "
                                "PNG or JPEG file.") from error


def input_fn(request_body, request_content_type):
    """Decode a PNG or JPEG body into an RGB PIL image."""
    media_type = _media_type(request_content_type)
    if media_type not in IMAGE_TYPES:
        raise UnsupportedContentTypeError(f"Content type {request_content_type!r} is not supported; send {ACCEPTED}.")
    body = request_body.encode("latin-1") if isinstance(request_body, str) else bytes(request_body or b"")
    return _decode_image(body, media_type)


def predict_fn(input_data, model):
    """Room boxes in pixels of the image as sent, highest confidence first."""
    results = model.yolo.predict(input_data, imgsz=model.imgsz, conf=CONFIDENCE_THRESHOLD, iou=IOU_THRESHOLD,
                                 max_det=MAX_DETECTIONS, device=model.device, verbose=False)
    boxes = results[0].boxes
    xyxy = boxes.xyxy.float().cpu().tolist()
    confidences = boxes.conf.float().cpu().tolist()
    classes = boxes.cls.int().cpu().tolist()
    found = [
        {"class": model.class_names[c], "class_id": c, "confidence": round(p, 4), "xyxy": [round(v, 1) for v in box]}
        for box, p, c in zip(xyxy, confidences, classes)
    ]
    found.sort(key=lambda b: b["confidence"], reverse=True)
    return Detections(input_data.width, input_data.height, found)


def output_fn(prediction, accept):
    """JSON: the image's size and its boxes."""
    accepted = [_media_type(part) for part in (accept or "*/*").split(",")]
    if not any(kind in (JSON, "application/*", "*/*", "") for kind in accepted):
        raise UnsupportedAcceptError(f"Accept {accept!r} is not supported; this model answers {JSON}.")
    return json.dumps({"image": {"width": prediction.width, "height": prediction.height}, "boxes": prediction.boxes})
