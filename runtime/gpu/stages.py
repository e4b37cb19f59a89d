"""The torch stages of one loop, on one device: what :class:`runtime.localizer.Localizer` builds for
``device="cuda"`` (or ``"torch:cpu"``) instead of the numpy/OpenCV stages."""

from __future__ import annotations

from calibration.geometry import NADIR_MOUNT, Mount

from . import torch_device
from .timing import StageClock

__all__ = ["TorchStages"]


class TorchStages:
    """Factories of the device stages, sharing one device and one :class:`runtime.gpu.timing.StageClock`.

    Args:
        device: a torch device name (:func:`runtime.gpu.loop_device`'s result, e.g. ``"cuda:0"`` or ``"cpu"``).

    Raises:
        runtime.errors.MissingExtraError: torch is not installed. runtime.gpu.DeviceError: no such CUDA device.
    """

    def __init__(self, device: str) -> None:
        self.device = torch_device(device)
        self.clock = StageClock(self.device)
        self._searcher = None
        self._jpeg = None

    @property
    def jpeg(self):
        """The :class:`runtime.gpu.decode.JpegDecoder` of this device (made on first use; on CUDA with torchvision
        it decodes JPEG frames there, else it declines and frames are decoded on the host)."""
        if self._jpeg is None:
            from .decode import JpegDecoder

            self._jpeg = JpegDecoder.for_device(self.device)
        return self._jpeg

    @jpeg.setter
    def jpeg(self, decoder) -> None:
        self._jpeg = decoder

    def device_frame(self, frame):
        """``frame`` (:class:`runtime.events.Frame`) decoded on the device as a
        :class:`runtime.gpu.rectify.DeviceFrame`, or None when the host decodes it (already decoded, not JPEG, no
        device decoder, refused). Timed as the stage "decode"."""
        if frame.is_decoded or frame.encoded is None or not self.jpeg.available:
            return None
        with self.clock.stage("decode"):
            return self.jpeg.frame(frame.encoded)

    def viewer(self, camera, gsd: float, size_px: int, *, mount: Mount = NADIR_MOUNT):
        """A :class:`runtime.gpu.rectify.TorchGroundViewer` (``GroundViewer``'s arguments)."""
        from .rectify import TorchGroundViewer

        return TorchGroundViewer(camera, gsd, size_px, mount=mount, device=self.device, clock=self.clock)

    def aligner(self, imagery, **settings):
        """A :class:`runtime.gpu.align.TorchFineAligner` of the map imagery (``FineAligner``'s settings)."""
        from .align import TorchFineAligner

        return TorchFineAligner(imagery, device=self.device, clock=self.clock, **settings)

    def search(self, package, queries, k: int, prior=None):
        """Exact scoped top-k of ``package`` (:class:`runtime.gpu.search.TorchSearcher`, its embeddings uploaded on
        the first call)."""
        if self._searcher is None or self._searcher.package is not package:
            from .search import TorchSearcher

            self._searcher = TorchSearcher(package, self.device, clock=self.clock)
        return self._searcher.search(queries, k, prior)
