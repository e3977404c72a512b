#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace AzureDicom
{
// An incremental MD5 digest (OpenSSL EVP), used to tell whether Orthanc stored other content for
// an instance already sent. It is a change check, not a security measure.
class Md5
{
public:
  Md5();
  ~Md5();

  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;

  void Update(const void* data, size_t size);

  // Returns the digest in lower-case hexadecimal and starts a new one.
  std::string Finish();

private:
  struct State;
  std::unique_ptr<State> state_;
};
}  // namespace AzureDicom
