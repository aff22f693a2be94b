"""``vidprop view``: a local web page to review results and explore correspondences.

* :mod:`vidprop.view.results` finds results on disk (segment, track, eval
  davis folders) and the original frames they were made from;
* :mod:`vidprop.view.frames` reads single frames on demand (image folders,
  or a video decoded with seeking and a small cache);
* :mod:`vidprop.view.clicks` answers a click on the source image of a pair
  from cached DIFT features (exactly ``semantic_argmax``'s answer);
* :mod:`vidprop.view.app` is the Starlette app (page, JSON API, files);
* :mod:`vidprop.view.security` is the guard in front of every local page
  (Host allowlist, a per-run token and its cookie, Origin check on writes,
  security headers);
* :mod:`vidprop.view.server` binds a socket and runs uvicorn, always with the
  guard (:class:`~vidprop.view.server.PageServer`; other pages such as
  ``vidprop annotate`` serve their apps through it too, and take their flags
  from :mod:`vidprop.cli.serving`).

The page (``static/``) is plain HTML, CSS and JavaScript: no build step and
no request outside the local server.  Starlette and uvicorn come with the
``view`` extra: ``pip install 'vidprop[view]'``.
"""
