// Sorting and filtering for the findings tables. It reads only the page itself and
// fetches nothing; without it the report reads the same, unsorted.
(function () {
  "use strict";

  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) {
      return "";
    }
    var rank = cell.getAttribute("data-rank");
    return rank !== null ? rank : cell.textContent.trim().toLowerCase();
  }

  function sortTable(table, index) {
    var heads = table.tHead.rows[0].cells;
    var ascending = heads[index].getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var order = cellKey(a, index).localeCompare(cellKey(b, index), undefined, {
        numeric: true
      });
      return ascending ? order : -order;
    });
    rows.forEach(function (row) {
      body.appendChild(row);
    });
    Array.prototype.forEach.call(heads, function (head) {
      head.removeAttribute("aria-sort");
    });
    heads[index].setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  function filterTable(table, input, status) {
    var needle = input.value.trim().toLowerCase();
    var rows = table.tBodies[0].rows;
    var shown = 0;
    Array.prototype.forEach.call(rows, function (row) {
      var match = needle === "" || row.textContent.toLowerCase().indexOf(needle) !== -1;
      row.hidden = !match;
      if (match) {
        shown += 1;
      }
    });
    status.textContent = needle === "" ? "" : shown + " of " + rows.length + " rows match";
  }

  document.querySelectorAll("section.kind").forEach(function (section) {
    var table = section.querySelector("table.findings");
    if (!table) {
      return;
    }

    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (head, index) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = head.textContent;
      button.title = "Sort by " + head.textContent;
      head.textContent = "";
      head.appendChild(button);
      button.addEventListener("click", function () {
        sortTable(table, index);
      });
    });

    var row = section.querySelector(".filter-row");
    var input = section.querySelector("input.filter");
    var status = section.querySelector("output.filter-status");
    if (row && input && status) {
      row.hidden = false;
      input.addEventListener("input", function () {
        filterTable(table, input, status);
      });
    }
  });
})();
