#include "Azure/MultipartWriter.h"

#include "Common/Exception.h"

#include <openssl/rand.h>

#include <cstring>

namespace AzureDicom
{
namespace
{
const size_t BOUNDARY_RANDOM_BYTES = 16;  // 128 bits: a collision with instance data is negligible
const char PART_HEADERS[] = "Content-Type: application/dicom\r\n\r\n";
const char CRLF[] = "\r\n";
const char DASHES[] = "--";


std::string MakeRandomBoundary()
{
  unsigned char random[BOUNDARY_RANDOM_BYTES];
  if (RAND_bytes(random, sizeof(random)) != 1)
  {
    throw Exception(ErrorCode::InternalError,
                    "OpenSSL's RAND_bytes() failed to produce the multipart boundary of a STOW-RS "
                    "request");
  }

  static const char hexDigits[] = "0123456789abcdef";
  std::string boundary;
  boundary.reserve(2 * sizeof(random));
  for (unsigned char byte : random)
  {
    boundary.push_back(hexDigits[byte >> 4]);
    boundary.push_back(hexDigits[byte & 0x0f]);
  }

  return boundary;
}
}  // namespace


MultipartWriter::MultipartWriter() : boundary_(MakeRandomBoundary()) {}


void MultipartWriter::Reserve(size_t bytes, size_t partCount)
{
  const size_t delimiterSize = std::strlen(DASHES) + boundary_.size() + std::strlen(CRLF);
  const size_t partOverhead = delimiterSize + std::strlen(PART_HEADERS) + std::strlen(CRLF);
  const size_t closeSize = delimiterSize + std::strlen(DASHES);

  body_.reserve(body_.size() + bytes + partCount * partOverhead + closeSize);
}


void MultipartWriter::AddPart(const std::string& dicom)
{
  AddPart(dicom.data(), dicom.size());
}


void MultipartWriter::AddPart(const char* data, size_t size)
{
  if (finished_)
  {
    throw Exception(ErrorCode::InternalError,
                    "MultipartWriter::AddPart() was called after Finish() closed the body");
  }

  // RFC 2046 delimits a part with CRLF "--" boundary. The stricter test for "--" boundary anywhere
  // in the part is enough: the boundary is hex digits, so no match can straddle the part's end and
  // the CRLF that this writer appends after it.
  const std::string dashBoundary = DASHES + boundary_;
  if (memmem(data, size, dashBoundary.data(), dashBoundary.size()) != nullptr)
  {
    throw Exception(ErrorCode::InternalError,
                    "part " + std::to_string(parts_ + 1) + " of a STOW-RS request (" +
                        std::to_string(size) + " bytes) contains the multipart boundary " +
                        boundary_ + ", expected random bytes never to match it");
  }

  body_.append(dashBoundary);
  body_.append(CRLF);
  body_.append(PART_HEADERS);
  body_.append(data, size);
  body_.append(CRLF);
  parts_++;
}


std::string MultipartWriter::GetContentType() const
{
  return "multipart/related; type=\"application/dicom\"; boundary=" + boundary_;
}


const std::string& MultipartWriter::Finish()
{
  if (finished_)
  {
    return body_;
  }

  if (parts_ == 0)
  {
    throw Exception(ErrorCode::InternalError,
                    "MultipartWriter::Finish() was called with no part, expected at least one "
                    "instance in a STOW-RS request");
  }

  body_.append(DASHES);
  body_.append(boundary_);
  body_.append(DASHES);
  body_.append(CRLF);
  finished_ = true;
  return body_;
}
}  // namespace AzureDicom
