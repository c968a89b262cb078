from .resolution import ResizeCenterCrop, ResolutionSample

__all__ = ['ResizeCenterCrop', 'ResolutionSample']
