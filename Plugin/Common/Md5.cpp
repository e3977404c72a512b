#include "Common/Md5.h"

#include "Common/Exception.h"

#include <openssl/evp.h>

namespace AzureDicom
{
struct Md5::State
{
  EVP_MD_CTX* context = nullptr;
};


Md5::Md5() : state_(std::make_unique<State>())
{
  state_->context = EVP_MD_CTX_new();
  if (state_->context == nullptr || EVP_DigestInit_ex(state_->context, EVP_md5(), nullptr) != 1)
  {
    EVP_MD_CTX_free(state_->context);
    throw Exception(ErrorCode::InternalError, "OpenSSL cannot compute an MD5 digest");
  }
}


Md5::~Md5()
{
  EVP_MD_CTX_free(state_->context);
}


void Md5::Update(const void* data, size_t size)
{
  if (EVP_DigestUpdate(state_->context, data, size) != 1)
  {
    throw Exception(ErrorCode::InternalError, "OpenSSL failed to update an MD5 digest");
  }
}


std::string Md5::Finish()
{
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(state_->context, digest, &length) != 1 ||
      EVP_DigestInit_ex(state_->context, EVP_md5(), nullptr) != 1)
  {
    throw Exception(ErrorCode::InternalError, "OpenSSL failed to finish an MD5 digest");
  }

  static const char* const HEX_DIGITS = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * length);
  for (unsigned int i = 0; i < length; i++)
  {
    hex.push_back(HEX_DIGITS[digest[i] >> 4]);
    hex.push_back(HEX_DIGITS[digest[i] & 0x0f]);
  }
  return hex;
}
}  // namespace AzureDicom
