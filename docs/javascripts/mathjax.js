// MathJax for pymdownx.arithmatex: $...$ and $$...$$ in the pages and notebooks.
window.MathJax = {
  tex: {inlineMath: [["\\(", "\\)"], ["$", "$"]], displayMath: [["\\[", "\\]"], ["$$", "$$"]],
        processEscapes: true, processEnvironments: true}
};
