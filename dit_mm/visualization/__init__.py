"""Pictures of what a dynamic backbone did with an image (numpy + cv2, no
GUI)."""
from .routing_map import (GAP, TITLE_HEIGHT, draw_keep_masks, draw_routing,
                          image_region, stack_pictures)

__all__ = ['GAP', 'TITLE_HEIGHT', 'draw_keep_masks', 'draw_routing',
           'image_region', 'stack_pictures']
