// Loaded before require.js and embed-amd.js on pages with widgets (nb_ipywidgets_js in _config.yml). Part of the
// sitsr book.
// 1. @jupyter-widgets/html-manager takes the URL of its icon fonts from its AMD module URI. A global `require`
//    object defined before require.js loads is its configuration: map the module's folder onto _static/widgets/,
//    where the vendored fonts are (else they resolve to notebooks/@jupyter-widgets/... and fail).
window.require = {
  paths: {
    "@jupyter-widgets/html-manager/dist": new URL("widgets", document.currentScript.src).href,
    "@jupyter-widgets/html-manager": new URL("widgets/html-manager", document.currentScript.src).href,
  },
};
// 2. html-manager typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue); the book loads MathJax 3.
//    Deferred MathJax has run by DOMContentLoaded, and widgets render after it: map the call onto MathJax 3.
window.addEventListener("DOMContentLoaded", function () {
  var mj = window.MathJax;
  if (mj && !mj.Hub) {
    mj.Hub = {
      Queue: function (job) {
        (mj.startup ? mj.startup.promise : Promise.resolve()).then(function () {
          return mj.typesetPromise([job[2]]);
        });
      },
    };
  }
});
