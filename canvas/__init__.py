"""Student canvases: sequenced JSON Patch streams with recovery and snapshots.

Not built yet (issue 3). The foundation stores canvas snapshots
(``persistence.models.CanvasSnapshot``) and answers ``canvases: {}`` in the
``session:join`` ack until the canvas store lands here.
"""
