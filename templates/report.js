// Sorting and filtering for the findings tables. It reads only the page itself and
// fetches nothing; without it the report reads the same, unsorted.
(function () {
  "use strict";

  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) {
      return "";
    }
    var key = cell.getAttribute("data-sort");
    return key !== null ? key : cell.textContent.trim().toLowerCase();
  }

  function compareKeys(a, b) {
    var x = Number(a);
    var y = Number(b);
    if (a !== "" && b !== "" && !isNaN(x) && !isNaN(y)) {
      return x - y;
    }
    return a.localeCompare(b, undefined, { numeric: true });
  }

  function sortTable(table, index) {
    var heads = table.tHead.rows[0].cells;
    var ascending = heads[index].getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, position) {
      return { row: row, key: cellKey(row, index), position: position };
    });
    keyed.sort(function (a, b) {
      var order = compareKeys(a.key, b.key);
      if (order === 0) {
        return a.position - b.position;
      }
      return ascending ? order : -order;
    });
    var fragment = document.createDocumentFragment();
    keyed.forEach(function (item) {
      fragment.appendChild(item.row);
    });
    body.appendChild(fragment);
    Array.prototype.forEach.call(heads, function (head) {
      head.removeAttribute("aria-sort");
    });
    heads[index].setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  function filterTable(table, input, column, status) {
    var needle = input.value.trim().toLowerCase();
    var index = column.value === "" ? -1 : Number(column.value);
    var rows = table.tBodies[0].rows;
    var shown = 0;
    Array.prototype.forEach.call(rows, function (row) {
      var source = index < 0 ? row : row.cells[index];
      var text = source ? source.textContent.toLowerCase() : "";
      var match = needle === "" || text.indexOf(needle) !== -1;
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
      button.title = "Sort by " + head.textContent;
      while (head.firstChild) {
        button.appendChild(head.firstChild);
      }
      head.appendChild(button);
      button.addEventListener("click", function () {
        sortTable(table, index);
      });
    });

    var row = section.querySelector(".filter-row");
    var input = section.querySelector("input.filter");
    var column = section.querySelector("select.filter-column");
    var status = section.querySelector("output.filter-status");
    if (row && input && column && status) {
      row.hidden = false;
      var update = function () {
        filterTable(table, input, column, status);
      };
      input.addEventListener("input", update);
      column.addEventListener("change", update);
    }
  });
})();
