"""Pictures of what a dynamic backbone did with an image (numpy + cv2, no
GUI), and running a config's model on image files for them."""
from .routing_map import image_region
from .routing_overlay import (draw_routing_overlay, routing_summary,
                              sample_grid, token_size)

__all__ = ['draw_routing_overlay', 'image_region', 'routing_summary',
           'sample_grid', 'token_size']
