document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
  var b=t.tBodies[0],rows=Array.from(b.rows),asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
  rows.sort(function(a,c){var x=a.cells[i],y=c.cells[i];
   var u=x.dataset.v,v=y.dataset.v;
   if(u!==undefined&&v!==undefined){return asc?u-v:v-u;}
   if(u===undefined&&v!==undefined){return 1;} if(v===undefined&&u!==undefined){return -1;}
   return asc?x.textContent.localeCompare(y.textContent):y.textContent.localeCompare(x.textContent);});
  rows.forEach(function(r){b.appendChild(r);});});});});
