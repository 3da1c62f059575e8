// The ORQA demo page: POST /api/answer {question} and show the answer in its passage.
"use strict";

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => { node[k] = v; });
  (children || []).forEach((c) => node.append(c));
  return node;
}

function evidenceNode(evidence) {
  const text = evidence.text;
  const body = el("div", {className: "text"});
  if (evidence.highlight) {
    const [start, end] = evidence.highlight;
    body.append(text.slice(0, start),
                el("mark", {className: "answer", textContent: text.slice(start, end)}),
                text.slice(end));
  } else {
    body.append(text);
  }
  return [el("div", {className: "title", textContent: evidence.title}), body];
}

function show(result) {
  document.getElementById("answer").textContent = result.answer || "(no answer)";
  document.getElementById("score").textContent =
      result.score === null ? "" : `score ${result.score.toFixed(3)}`;
  const evidence = document.getElementById("evidence");
  evidence.replaceChildren(...(result.evidence ? evidenceNode(result.evidence) : []));
  const list = document.getElementById("passages");
  list.replaceChildren(...result.passages.map((p) => el("li", {className: "passage-item"}, [
    el("span", {className: "title", textContent: p.title}),
    el("span", {className: "score", textContent: ` (block ${p.block_id}, score ${p.score.toFixed(3)})`}),
    el("div", {className: "text", textContent: p.text}),
  ])));
  document.getElementById("result").hidden = false;
}

async function ask(event) {
  event.preventDefault();
  const question = document.getElementById("question").value;
  const status = document.getElementById("status");
  status.className = "";
  status.textContent = "Thinking...";
  try {
    const response = await fetch("/api/answer", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({question}),
    });
    const result = await response.json();
    if (!response.ok) throw new Error(result.error || response.statusText);
    show(result);
    status.textContent = "";
    status.dataset.done = "1";
  } catch (error) {
    status.className = "error";
    status.textContent = `Error: ${error.message}`;
  }
}

document.getElementById("question-form").addEventListener("submit", ask);
