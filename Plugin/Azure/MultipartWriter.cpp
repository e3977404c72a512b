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


void MultipartWriter::AddText(std::string text)
{
  buffers_.push_back(std::make_unique<StringBuffer>(std::move(text)));
  body_.Add(buffers_.back()->GetData(), buffers_.back()->GetSize());
}


void MultipartWriter::AddPart(const std::string& dicom)
{
  AddPart(std::make_unique<StringBuffer>(dicom));
}


void MultipartWriter::AddPart(const char* data, size_t size)
{
  AddPart(std::make_unique<StringBuffer>(std::string(data, size)));
}


void MultipartWriter::AddPart(std::unique_ptr<IBuffer> dicom)
{
  if (closed_)
  {
    throw Exception(ErrorCode::InternalError,
                    "MultipartWriter::AddPart() was called after the body was closed");
  }

  // RFC 2046 delimits a part with CRLF "--" boundary. The stricter test for "--" boundary anywhere
  // in the part is enough: the boundary is hex digits, so no match can straddle the part's end and
  // the CRLF that this writer appends after it.
  const std::string dashBoundary = DASHES + boundary_;
  if (memmem(dicom->GetData(), dicom->GetSize(), dashBoundary.data(), dashBoundary.size()) !=
      nullptr)
  {
    throw Exception(ErrorCode::InternalError,
                    "part " + std::to_string(parts_ + 1) + " of a STOW-RS request (" +
                        std::to_string(dicom->GetSize()) +
                        " bytes) contains the multipart boundary " + boundary_ +
                        ", expected random bytes never to match it");
  }

  // The CRLF that ends the previous part goes with this part's delimiter.
  AddText((parts_ > 0 ? CRLF : "") + dashBoundary + CRLF + PART_HEADERS);
  buffers_.push_back(std::move(dicom));
  body_.Add(buffers_.back()->GetData(), buffers_.back()->GetSize());
  parts_++;
}


std::string MultipartWriter::GetContentType() const
{
  return "multipart/related; type=\"application/dicom\"; boundary=" + boundary_;
}


void MultipartWriter::Close()
{
  if (closed_)
  {
    return;
  }

  if (parts_ == 0)
  {
    throw Exception(ErrorCode::InternalError,
                    "MultipartWriter::Close() was called with no part, expected at least one "
                    "instance in a STOW-RS request");
  }

  AddText(std::string(CRLF) + DASHES + boundary_ + DASHES + CRLF);
  closed_ = true;
}


std::string MultipartWriter::Finish()
{
  Close();
  return body_.ToString();
}
}  // namespace AzureDicom
