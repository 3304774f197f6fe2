// Restricted unpickler for torch.save zip checkpoints (see torch_checkpoint.hpp for the rules).
#include "io/torch_pickle.hpp"

#include <bit>
#include <unordered_map>

#include "io/utf8.hpp"
#include "sdrt/base/error.hpp"

namespace sdrt::io::pickle {

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

namespace {

// Bounds memory for hostile pickles; a state dict needs about 10 objects per tensor.
constexpr size_t kMaxObjects = size_t{1} << 23;
constexpr size_t kMaxGlobalNameLength = 256;

struct AllowedGlobal {
  std::string_view module, name;
  Callable callable;
  DType dtype;  // of a storage type
};

constexpr AllowedGlobal kAllowedGlobals[] = {
    {"collections", "OrderedDict", Callable::OrderedDict, DType::U8},
    {"torch._utils", "_rebuild_tensor_v2", Callable::RebuildTensor, DType::U8},
    {"torch._utils", "_rebuild_parameter", Callable::RebuildParameter, DType::U8},
    {"torch._utils", "_rebuild_parameter_with_state", Callable::RebuildParameterWithState, DType::U8},
    {"torch", "Size", Callable::Size, DType::U8},
    {"torch", "DoubleStorage", Callable::StorageType, DType::F64},
    {"torch", "FloatStorage", Callable::StorageType, DType::F32},
    {"torch", "HalfStorage", Callable::StorageType, DType::F16},
    {"torch", "BFloat16Storage", Callable::StorageType, DType::BF16},
    {"torch", "LongStorage", Callable::StorageType, DType::I64},
    {"torch", "IntStorage", Callable::StorageType, DType::I32},
    {"torch", "ShortStorage", Callable::StorageType, DType::I16},
    {"torch", "CharStorage", Callable::StorageType, DType::I8},
    {"torch", "ByteStorage", Callable::StorageType, DType::U8},
    {"torch", "BoolStorage", Callable::StorageType, DType::Bool},
};

class Unpickler {
 public:
  Unpickler(std::span<const uint8_t> bytes, std::string where, StorageLoader load_storage)
      : bytes_(bytes), where_(std::move(where)), load_storage_(std::move(load_storage)) {}

  // Runs the pickle to its STOP and returns the pickled object.
  const Node* run();
  std::vector<std::unique_ptr<Node>> take_arena() { return std::move(arena_); }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    throw Error(where_ + ": " + message + " (at byte " + std::to_string(op_pos_) + ")");
  }

  Node* make(Kind kind) {
    if (arena_.size() >= kMaxObjects) fail("more than " + std::to_string(kMaxObjects) + " objects");
    arena_.push_back(std::make_unique<Node>());
    arena_.back()->kind = kind;
    return arena_.back().get();
  }
  Node* make_int(int64_t v) {
    Node* n = make(Kind::Int);
    n->integer = v;
    return n;
  }

  std::span<const uint8_t> take(uint64_t n) {
    if (n > bytes_.size() - pos_) fail("pickle ends in the middle of an opcode (truncated?)");
    const auto s = bytes_.subspan(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  uint64_t uint_le(int n) {
    const auto s = take(static_cast<uint64_t>(n));
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | s[static_cast<size_t>(i)];
    return v;
  }
  std::string line() {
    const size_t start = pos_;
    while (pos_ < bytes_.size() && bytes_[pos_] != '\n') {
      if (pos_ - start > kMaxGlobalNameLength) fail("GLOBAL name is too long");
      ++pos_;
    }
    if (pos_ == bytes_.size()) fail("pickle ends inside a GLOBAL name (truncated?)");
    return std::string(reinterpret_cast<const char*>(bytes_.data() + start), pos_++ - start);
  }

  void push(Node* n) { stack_.push_back(n); }
  Node* pop() {
    if (stack_.size() <= base()) fail("pickle stack underflow");
    Node* n = stack_.back();
    stack_.pop_back();
    return n;
  }
  Node* top() {
    if (stack_.size() <= base()) fail("pickle stack underflow");
    return stack_.back();
  }
  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<Node*> pop_mark() {
    if (marks_.empty()) fail("pickle uses a MARK that was never set");
    std::vector<Node*> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }

  void memo_put(uint64_t index) { memo_[index] = top(); }
  Node* memo_get(uint64_t index) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo entry " + std::to_string(index) + " is read before it is written");
    return it->second;
  }

  void push_text(Kind kind, uint64_t length);
  void push_long(uint64_t length);
  void push_global(const std::string& module, const std::string& name);
  void push_tuple(std::vector<Node*> items) {
    Node* t = make(Kind::Tuple);
    t->items = std::move(items);
    push(t);
  }
  void set_items(std::vector<Node*> items);
  void append_items(std::vector<Node*> items);
  void reduce();
  void build();
  void persistent_load();
  Node* rebuild_tensor(const std::vector<Node*>& args);
  Node* check_parameter(const std::vector<Node*>& args, size_t count);

  std::span<const uint8_t> bytes_;
  std::string where_;
  StorageLoader load_storage_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<std::unique_ptr<Node>> arena_;
  std::vector<Node*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Node*> memo_;
  std::unordered_map<std::string, Node*> storages_;  // by key, so views share them
};

const Node* Unpickler::run() {
  for (;;) {
    op_pos_ = pos_;
    const uint8_t op = take(1)[0];
    switch (op) {
      case 0x80: {  // PROTO
        const uint8_t version = take(1)[0];
        if (version < 2 || version > 5) fail("unsupported pickle protocol " + std::to_string(version));
        break;
      }
      case 0x95: take(8); break;  // FRAME: only a length hint
      case '}': push(make(Kind::Dict)); break;
      case ']': push(make(Kind::List)); break;
      case ')': push(make(Kind::Tuple)); break;
      case '(': marks_.push_back(stack_.size()); break;
      case 'X': push_text(Kind::String, uint_le(4)); break;     // BINUNICODE
      case 0x8c: push_text(Kind::String, uint_le(1)); break;    // SHORT_BINUNICODE
      case 0x8d: push_text(Kind::String, uint_le(8)); break;    // BINUNICODE8
      case 'B': push_text(Kind::Bytes, uint_le(4)); break;      // BINBYTES
      case 'C': push_text(Kind::Bytes, uint_le(1)); break;      // SHORT_BINBYTES
      case 'q': memo_put(uint_le(1)); break;                    // BINPUT
      case 'r': memo_put(uint_le(4)); break;                    // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); break;                 // MEMOIZE
      case 'h': push(memo_get(uint_le(1))); break;              // BINGET
      case 'j': push(memo_get(uint_le(4))); break;              // LONG_BINGET
      case 'J': push(make_int(static_cast<int32_t>(uint_le(4)))); break;  // BININT
      case 'K': push(make_int(static_cast<int64_t>(uint_le(1)))); break;  // BININT1
      case 'M': push(make_int(static_cast<int64_t>(uint_le(2)))); break;  // BININT2
      case 0x8a: push_long(uint_le(1)); break;                  // LONG1
      case 'G': {                                                // BINFLOAT (big-endian)
        const auto s = take(8);
        uint64_t v = 0;
        for (uint8_t b : s) v = (v << 8) | b;
        Node* n = make(Kind::Float);
        n->real = std::bit_cast<double>(v);
        push(n);
        break;
      }
      case 't': push_tuple(pop_mark()); break;  // TUPLE
      case 0x85: push_tuple({pop()}); break;    // TUPLE1
      case 0x86: {                              // TUPLE2
        Node* b = pop();
        Node* a = pop();
        push_tuple({a, b});
        break;
      }
      case 0x87: {  // TUPLE3
        Node* c = pop();
        Node* b = pop();
        Node* a = pop();
        push_tuple({a, b, c});
        break;
      }
      case 's': {  // SETITEM
        Node* value = pop();
        Node* key = pop();
        set_items({key, value});
        break;
      }
      case 'u': set_items(pop_mark()); break;  // SETITEMS
      case 'a': append_items({pop()}); break;  // APPEND
      case 'e': append_items(pop_mark()); break;  // APPENDS
      case 'N': push(make(Kind::None)); break;
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        Node* n = make(Kind::Bool);
        n->integer = op == 0x88;
        push(n);
        break;
      }
      case 'c': {  // GLOBAL
        const std::string module = line();
        push_global(module, line());
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        Node* name = pop();
        Node* module = pop();
        if (module->kind != Kind::String || name->kind != Kind::String) fail("STACK_GLOBAL needs two strings");
        push_global(module->text, name->text);
        break;
      }
      case 'R': reduce(); break;
      case 'b': build(); break;
      case 'Q': persistent_load(); break;  // BINPERSID
      case '.': return top();              // STOP
      default: {
        static const char* hex = "0123456789abcdef";
        fail(std::string("unsupported pickle opcode 0x") + hex[op >> 4] + hex[op & 15] +
             " (only what torch.save writes for state dicts is understood)");
      }
    }
  }
}

void Unpickler::push_text(Kind kind, uint64_t length) {
  const auto s = take(length);
  Node* n = make(kind);
  n->text.assign(reinterpret_cast<const char*>(s.data()), s.size());
  if (kind == Kind::String && !utf8::valid(n->text)) fail("string is not valid UTF-8");
  push(n);
}

void Unpickler::push_long(uint64_t length) {
  if (length > 8) fail("integer of " + std::to_string(length) + " bytes is too large");
  const auto s = take(length);
  uint64_t v = 0;
  for (size_t i = s.size(); i-- > 0;) v = (v << 8) | s[i];
  if (length > 0 && length < 8 && (s.back() & 0x80)) v |= ~uint64_t{0} << (8 * length);  // sign-extend
  push(make_int(static_cast<int64_t>(v)));
}

void Unpickler::push_global(const std::string& module, const std::string& name) {
  for (const auto& g : kAllowedGlobals) {
    if (g.module != module || g.name != name) continue;
    Node* n = make(Kind::Global);
    n->text = module + "." + name;
    n->callable = g.callable;
    n->dtype = g.dtype;
    push(n);
    return;
  }
  fail("refusing to load global '" + module + "." + name +
       "': only collections.OrderedDict, torch tensor-rebuild functions, torch.Size and torch storage types are "
       "allowed (the file may hold code that runs when Python unpickles it; only state dicts of tensors can be read)");
}

void Unpickler::set_items(std::vector<Node*> items) {
  Node* dict = top();
  if (dict->kind != Kind::Dict) fail(std::string("SETITEM on a ") + kind_name(dict->kind) + ", not a dict");
  if (items.size() % 2) fail("SETITEMS with an odd number of items");
  dict->items.insert(dict->items.end(), items.begin(), items.end());
}

void Unpickler::append_items(std::vector<Node*> items) {
  Node* list = top();
  if (list->kind != Kind::List) fail(std::string("APPEND on a ") + kind_name(list->kind) + ", not a list");
  list->items.insert(list->items.end(), items.begin(), items.end());
}

void Unpickler::reduce() {
  Node* args = pop();
  Node* f = pop();
  if (f->kind != Kind::Global) fail(std::string("REDUCE calls a ") + kind_name(f->kind));
  if (args->kind != Kind::Tuple) fail("REDUCE arguments of " + f->text + " are not a tuple");
  const auto& a = args->items;
  switch (f->callable) {
    case Callable::OrderedDict:
      if (!a.empty()) fail("collections.OrderedDict is called with arguments");
      push(make(Kind::Dict));
      return;
    case Callable::RebuildTensor: push(rebuild_tensor(a)); return;
    case Callable::RebuildParameter: push(check_parameter(a, 3)); return;
    case Callable::RebuildParameterWithState: push(check_parameter(a, 4)); return;
    case Callable::Size: {
      if (a.size() != 1 || a[0]->kind != Kind::Tuple) fail("torch.Size expects one tuple");
      for (const Node* d : a[0]->items)
        if (d->kind != Kind::Int) fail("torch.Size holds a non-integer");
      push(a[0]);
      return;
    }
    case Callable::StorageType: fail(f->text + " cannot be called");
  }
}

Node* Unpickler::rebuild_tensor(const std::vector<Node*>& a) {
  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  if (a.size() != 6 && a.size() != 7) fail("_rebuild_tensor_v2 expects 6 or 7 arguments, got " + std::to_string(a.size()));
  if (a[0]->kind != Kind::Storage) fail("_rebuild_tensor_v2: first argument is a " + std::string(kind_name(a[0]->kind)) + ", not a storage");
  if (a[1]->kind != Kind::Int) fail("_rebuild_tensor_v2: storage offset is not an integer");
  auto ints = [&](const Node* t, const char* what) {
    if (t->kind != Kind::Tuple) fail(std::string("_rebuild_tensor_v2: ") + what + " is not a tuple");
    std::vector<int64_t> v;
    for (const Node* d : t->items) {
      if (d->kind != Kind::Int) fail(std::string("_rebuild_tensor_v2: ") + what + " holds a non-integer");
      v.push_back(d->integer);
    }
    return v;
  };
  Node* t = make(Kind::Tensor);
  t->view = std::make_unique<View>(View{a[0], a[1]->integer, ints(a[2], "size"), ints(a[3], "stride")});
  if (t->view->size.size() != t->view->stride.size()) fail("_rebuild_tensor_v2: size and stride differ in length");
  return t;
}

Node* Unpickler::check_parameter(const std::vector<Node*>& a, size_t count) {
  // (data, requires_grad, backward_hooks[, state]): the parameter is its data tensor.
  if (a.size() != count || a[0]->kind != Kind::Tensor) fail("_rebuild_parameter expects a tensor and " + std::to_string(count - 1) + " more arguments");
  return a[0];
}

void Unpickler::build() {
  Node* state = pop();
  Node* obj = top();
  // An OrderedDict's instance attributes: torch state dicts carry their `_metadata` (module versions) this way.
  if (obj->kind == Kind::Dict && (state->kind == Kind::Dict || state->kind == Kind::None)) return;
  fail(std::string("BUILD on a ") + kind_name(obj->kind) + " is not supported");
}

void Unpickler::persistent_load() {
  // torch: ('storage', storage_type, key, location, numel)
  Node* pid = pop();
  const auto& p = pid->items;
  if (pid->kind != Kind::Tuple || p.size() != 5 || p[0]->kind != Kind::String || p[0]->text != "storage")
    fail("persistent id is not ('storage', type, key, location, numel)");
  if (p[1]->kind != Kind::Global || p[1]->callable != Callable::StorageType) fail("persistent id does not name a storage type");
  if (p[2]->kind != Kind::String || p[4]->kind != Kind::Int || p[4]->integer < 0)
    fail("persistent id needs a string key and a non-negative element count");
  const std::string& key = p[2]->text;
  const DType dtype = p[1]->dtype;
  auto it = storages_.find(key);
  if (it == storages_.end()) {
    Node* n = make(Kind::Storage);
    n->storage = std::make_unique<Storage>(load_storage_(key, dtype, static_cast<uint64_t>(p[4]->integer)));
    it = storages_.emplace(key, n).first;
  } else if (it->second->storage->dtype != dtype) {
    fail("storage '" + key + "' is used with two element types");
  }
  push(it->second);
}

}  // namespace

Pickled unpickle(std::span<const uint8_t> bytes, const std::string& where, const StorageLoader& load_storage) {
  Unpickler u(bytes, where, load_storage);
  Pickled p;
  p.root = u.run();
  p.arena = u.take_arena();
  return p;
}

}  // namespace sdrt::io::pickle
